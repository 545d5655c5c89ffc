// Builds the UI into dist/, which the hub embeds (crates/tether-hub/build.rs).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // No inline module preload polyfill: the hub's Content-Security-Policy forbids inline scripts.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1000,
  },
});
