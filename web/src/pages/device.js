// One device: its inventory (device_inventory.js), terminals in tabs (device_terminals.js:
// connect, reconnect, follow the window's size), its detached shells to re-attach
// (device_detached.js), a file browser (device_files.js), file download by path and upload by picking
// or dropping (with progress) through the hub's HTTP file API, and the `tether port-forward`
// command to copy. A feature the device reported off gets a panel saying so instead. Leaving the page with a shell running asks first
// (main.js): the shell would end.

import { API, HubUnreachable, csrfHeaders, expiredAfterUnauthorized, get, hubFetch, put, user } from '../api.js';
import { ago, copyButton, h } from '../dom.js';
import { removalPanel } from '../device_removal.js';
import { browserPanel, bytes } from './device_files.js';
import { detachedPanel } from './device_detached.js';
import { terminalTabs } from './device_terminals.js';
import { featureOn, inventoryPanel } from './device_inventory.js';

/** Larger downloads go to the browser's own download manager instead of memory. */
const IN_PAGE_DOWNLOAD_LIMIT = 256 * 1024 * 1024;

function filesUrl(device, what) {
  return `${API}/deviceconnect/devices/${encodeURIComponent(device.id)}/${what}`;
}

/** Hands `blob` to the browser as a saved file named `name`. */
function save(blob, name) {
  const href = URL.createObjectURL(blob);
  const link = h('a', { href, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken its copy once the click's task has run.
  setTimeout(() => URL.revokeObjectURL(href), 60000);
}

/**
 * Download by path: a HEAD first turns a refusal into a message; then the file is read here,
 * with progress, and saved once complete, so the page can say it is done (or that it broke
 * off). Files beyond the in-page limit go to the browser's download manager instead.
 */
function downloadPanel(device) {
  const path = h('input', { id: 'download-path', placeholder: '/absolute/path/on/the/device', size: 40 });
  const progress = h('progress', { max: 1, value: 0, hidden: true, id: 'download-progress' });
  const message = h('span', { class: 'notice', id: 'download-status', role: 'status' });
  const say = (text, failed = false) => {
    message.className = failed ? 'error' : 'notice';
    message.textContent = text;
  };
  const refused = async (response, what) => {
    if (response.status === 401 && (await expiredAfterUnauthorized())) return;
    const answer = await response.json().catch(() => ({}));
    say(answer.error || `${what} refused (${response.status})`, true);
  };

  async function download() {
    const url = `${filesUrl(device, 'download')}?path=${encodeURIComponent(path.value)}`;
    const name = path.value.split('/').pop() || 'download';
    delete message.dataset.done;
    progress.hidden = true;
    say('Checking…');
    const check = await hubFetch(url, { method: 'HEAD' });
    if (!check.ok) return refused(await hubFetch(url), 'download');
    const size = Number(check.headers.get('content-length') || NaN);
    if (size > IN_PAGE_DOWNLOAD_LIMIT) {
      const link = h('a', { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      say(`${name} (${bytes(size)}) was handed to the browser's downloads: see its download list.`);
      message.dataset.done = 'browser';
      return;
    }
    say(`Downloading ${name}${Number.isFinite(size) ? ` (${bytes(size)})` : ''}…`);
    const response = await hubFetch(url);
    if (!response.ok) return refused(response, 'download');
    const reader = response.body.getReader();
    const chunks = [];
    let received = 0;
    progress.hidden = !Number.isFinite(size) || size === 0;
    progress.value = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      if (size) progress.value = received / size;
    }
    // The hub ends the body short when it could not finish (or audit) the transfer.
    if (Number.isFinite(size) && received !== size) {
      say(`Download of ${name} broke off after ${bytes(received)} of ${bytes(size)}.`, true);
      return;
    }
    save(new Blob(chunks), name);
    progress.value = 1;
    say(`Downloaded ${name} (${bytes(received)}).`);
    message.dataset.done = 'true';
  }

  async function start() {
    try {
      await download();
    } catch (failure) {
      say(failure instanceof HubUnreachable ? 'Download failed: hub unreachable.' : `Download failed: ${failure.message}`, true);
    }
  }
  const form = h('form', { class: 'toolbar', onsubmit: (event) => { event.preventDefault(); start(); } },
    path, h('button', { type: 'submit', id: 'download' }, 'Download'), progress, message);
  return {
    element: h('div', {}, h('h2', {}, 'Download a file'), form),
    /** Downloads `file` (the file browser's click), reporting here. */
    download(file) {
      path.value = file;
      start();
    },
  };
}

function uploadPanel(device) {
  const directory = h('input', { id: 'upload-dir', placeholder: '/destination/directory', size: 40 });
  const picker = h('input', { type: 'file', id: 'upload-file', 'aria-label': 'File to upload' });
  const progress = h('progress', { max: 1, value: 0, hidden: true, id: 'upload-progress' });
  const message = h('span', { class: 'notice', id: 'upload-status' });
  const zone = h('div', { class: 'dropzone', id: 'dropzone' }, 'Drop a file here, or pick one: ', picker);

  /** Uploads `file` into `into` (the file browser's directory) or the typed directory; resolves
   *  to whether it succeeded. */
  const upload = (file, into) => new Promise((resolve) => {
    if (into) directory.value = into;
    const target = `${directory.value.replace(/\/+$/, '')}/${file.name}`;
    if (!directory.value.startsWith('/')) {
      message.className = 'error';
      message.textContent = 'Give an absolute destination directory first.';
      resolve(false);
      return;
    }
    const form = new FormData();
    form.append('path', target);
    form.append('file', file);
    const request = new XMLHttpRequest();
    request.open('POST', filesUrl(device, 'upload'));
    for (const [name, value] of Object.entries(csrfHeaders())) request.setRequestHeader(name, value);
    progress.hidden = false;
    progress.value = 0;
    message.className = 'notice';
    message.textContent = `Uploading ${file.name}…`;
    request.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) progress.value = event.loaded / event.total;
    });
    request.addEventListener('load', () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch { /* not JSON */ }
      if (request.status >= 200 && request.status < 300) {
        progress.value = 1;
        message.textContent = `Uploaded ${answer.path || target} (${answer.size ?? file.size} bytes, sha256 ${String(answer.sha256 || '').slice(0, 12)}…)`;
        message.dataset.done = 'true';
        resolve(true);
      } else {
        message.className = 'error';
        message.textContent = answer.error || `upload failed (${request.status})`;
        // Only an ended session logs out; another 401 is this upload's own refusal.
        if (request.status === 401) expiredAfterUnauthorized();
        resolve(false);
      }
    });
    request.addEventListener('error', () => {
      message.className = 'error';
      message.textContent = 'upload failed: connection lost';
      resolve(false);
    });
    request.send(form);
  });

  picker.addEventListener('change', () => { if (picker.files[0]) upload(picker.files[0]); });
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    if (event.dataTransfer.files[0]) upload(event.dataTransfer.files[0]);
  });
  return {
    element: h('div', {}, h('h2', {}, 'Upload a file'),
      h('div', { class: 'toolbar' }, h('label', {}, 'Destination directory ', directory)),
      zone, h('div', { class: 'toolbar' }, progress, message)),
    upload,
  };
}

/** A panel saying that `what` is switched off in the device's agent configuration. */
function offPanel(id, title, text) {
  return h('div', { id }, h('h2', {}, title), h('p', { class: 'notice off' }, text));
}

/** File transfer (browser, download, upload) when the device has it, else why not. */
function filesPanels(device) {
  if (!featureOn(device, 'files')) {
    return [offPanel('files-off', 'Files', 'File transfer is off on this device (file_transfer.enabled = false in its agent configuration).')];
  }
  const downloads = downloadPanel(device);
  const uploads = uploadPanel(device);
  return [browserPanel(device, { download: downloads.download, upload: uploads.upload }), downloads.element, uploads.element];
}

function portForwardPanel(device) {
  if (!featureOn(device, 'forwards')) {
    return offPanel('forwards-off', 'Port forwarding', 'Port forwarding is off on this device (port_forward.enabled = false in its agent configuration).');
  }
  const command = `tether port-forward ${device.name} 8080:127.0.0.1:80`;
  return h('div', {}, h('h2', {}, 'Port forwarding'),
    h('p', { class: 'notice' }, 'Forward a local port to the device with the CLI (edit ports to taste):'),
    h('div', { class: 'toolbar' }, h('code', { class: 'command', id: 'port-forward-command' }, command), copyButton(command)));
}

/** The device's tags (its groups); administrators edit them as a comma-separated list. */
function tagsLine(device) {
  const shown = h('span', { id: 'device-tags' });
  const render = (tags) => shown.replaceChildren(...(tags.length ? tags.map((tag) => h('span', { class: 'tag group' }, tag)) : [h('span', { class: 'notice' }, 'none')]));
  render(device.tags || []);
  const line = h('div', { class: 'toolbar' }, 'Tags: ', shown);
  if (user() && user().admin) {
    const input = h('input', { id: 'device-tags-input', size: 30, value: (device.tags || []).join(', '), placeholder: 'site-a, lab' });
    const message = h('span', { class: 'error' });
    line.append(h('form', { class: 'toolbar', onsubmit: async (event) => {
      event.preventDefault();
      message.textContent = '';
      const tags = input.value.split(',').map((tag) => tag.trim()).filter(Boolean);
      try {
        await put(`devices/${encodeURIComponent(device.id)}/tags`, { tags });
        render(tags);
      } catch (failure) { message.textContent = failure.message; }
    } }, input, h('button', { type: 'submit', class: 'small' }, 'Save tags'), message));
  }
  return line;
}

/** Terminal tabs and the detached shells, which open in a tab; told when a tab changes. */
function terminalPanels(device) {
  let detached = null;
  const tabs = terminalTabs(device, { changed: () => detached && detached.refresh() });
  detached = detachedPanel(device, { reattach: (sid) => tabs.reattach(sid), held: () => tabs.sids() });
  return {
    panels: [tabs.panel, detached.panel],
    leaving: () => tabs.leaving(),
    cleanup() {
      detached.cleanup();
      tabs.cleanup();
    },
  };
}

export function devicePage(container, id) {
  let terminal = null;
  let inventory = null;
  /** Left before the device was known: build nothing (its timers would outlive the page). */
  let left = false;
  const heading = h('h1', {}, 'Device');
  const details = h('p', { class: 'notice' });
  container.append(heading, details);
  get(`devices?id_prefix=${encodeURIComponent(id)}`).then((list) => {
    if (left) return;
    const device = list.devices.find((d) => d.id === id);
    if (!device) {
      details.className = 'error';
      details.textContent = 'No such device.';
      return;
    }
    heading.textContent = device.name;
    details.textContent = `${device.online ? 'online now' : `offline · last seen ${ago(device.last_seen_at)}`} · agent ${device.agent_version || 'unknown'} · ${device.id}`;
    inventory = inventoryPanel(device);
    const shell = featureOn(device, 'terminal')
      ? (terminal = terminalPanels(device)).panels
      : [h('section', { class: 'panel' }, offPanel('terminal-off', 'Terminal', 'The terminal is off on this device (terminal.enabled = false in its agent configuration).'))];
    container.append(tagsLine(device), inventory.panel, ...shell,
      h('section', { class: 'panel' }, ...filesPanels(device), portForwardPanel(device)),
      h('p', {}, h('a', { href: `#/recordings/${encodeURIComponent(device.id)}` }, 'Recorded sessions of this device')),
      removalPanel(device) || []);
  }).catch((failure) => {
    details.className = 'error';
    details.textContent = failure.message;
  });
  return {
    cleanup: () => {
      left = true;
      if (terminal) terminal.cleanup();
      if (inventory) inventory.cleanup();
    },
    leaving: () => terminal && terminal.leaving(),
  };
}
