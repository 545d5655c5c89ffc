// The device page's file browser: one directory of the device, listed through the hub
// (`GET /devices/{id}/files?path=`, the agent's version-2 `list`), entries in name order. A click
// on a directory opens it, a click on a file downloads it (with the download panel's progress
// and messages); a file dropped on the listing is uploaded into the shown directory, and when a
// file of that name is there already the page asks before overwriting it.

import { get } from '../api.js';
import { h } from '../dom.js';

/** "22 bytes", "1.5 MiB": sizes as people read them. */
export function bytes(count) {
  if (count < 1024) return `${count} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = count / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** The directory above `path` ("/" stays "/"). */
function parent(path) {
  const trimmed = path.replace(/\/+$/, '');
  const cut = trimmed.lastIndexOf('/');
  return cut <= 0 ? '/' : trimmed.slice(0, cut);
}

/**
 * `download(path)` starts a download (the download panel's), `upload(file, directory)` returns a
 * promise of whether the upload succeeded (the upload panel's).
 */
export function browserPanel(device, { download, upload }) {
  const remembered = `tether.browse.${device.id}`;
  const path = h('input', { id: 'browse-path', size: 40, 'aria-label': 'Directory on the device', value: localStorage.getItem(remembered) || '/' });
  const message = h('span', { class: 'notice', id: 'browse-status', role: 'status' });
  const body = h('tbody');
  const question = h('span', { id: 'browse-question' });
  const overwrite = h('button', { type: 'button', class: 'small primary', id: 'browse-overwrite' }, 'Overwrite');
  const cancel = h('button', { type: 'button', class: 'small', id: 'browse-cancel' }, 'Cancel');
  const confirm = h('div', { class: 'toolbar warning', id: 'browse-confirm', role: 'alertdialog', hidden: true }, question, overwrite, cancel);
  const zone = h('div', { class: 'dropzone browse', id: 'browse-drop' },
    h('div', { class: 'table-scroll' }, h('table', { id: 'browse-list' },
      h('thead', {}, h('tr', {}, ['Name', 'Size', 'Modified', 'Mode'].map((t) => h('th', {}, t)))), body)),
    h('p', { class: 'notice hint' }, 'Click a directory to open it, a file to download it; drop a file here to upload it into this directory.'));
  let shown = null;
  let entries = [];
  let pending = null;

  const say = (text, failed = false) => {
    message.className = failed ? 'error' : 'notice';
    message.textContent = text;
  };

  function render() {
    const rows = [];
    if (shown !== '/') {
      rows.push(h('tr', {}, h('td', { colspan: 4 }, h('button', { type: 'button', class: 'link', id: 'browse-up', onclick: () => open(parent(shown)) }, '↑ ..'))));
    }
    for (const entry of entries) {
      const opens = entry.kind === 'directory';
      const name = opens || entry.kind === 'file'
        ? h('button', { type: 'button', class: 'link', dataset: { entry: entry.name, kind: entry.kind }, onclick: () => (opens ? open(entry.path) : download(entry.path)) }, opens ? `${entry.name}/` : entry.name)
        : h('span', { dataset: { entry: entry.name, kind: entry.kind }, title: entry.kind }, `${entry.name} (${entry.kind})`);
      rows.push(h('tr', {}, h('td', {}, name), h('td', {}, opens ? '—' : bytes(entry.size)),
        h('td', {}, new Date(entry.modified * 1000).toLocaleString()), h('td', {}, entry.mode)));
    }
    if (!entries.length) rows.push(h('tr', {}, h('td', { colspan: 4, class: 'notice' }, 'This directory is empty.')));
    body.replaceChildren(...rows);
  }

  async function open(directory) {
    say(`Listing ${directory}…`);
    delete zone.dataset.shown;
    try {
      const listing = await get(`devices/${encodeURIComponent(device.id)}/files?path=${encodeURIComponent(directory)}`);
      shown = listing.path;
      entries = listing.entries;
      path.value = shown;
      localStorage.setItem(remembered, shown);
      render();
      say(`${entries.length} ${entries.length === 1 ? 'entry' : 'entries'} in ${shown}.`);
      zone.dataset.shown = shown;
    } catch (failure) {
      say(failure.message, true);
    }
  }

  async function send(file) {
    confirm.hidden = true;
    if (await upload(file, shown)) await open(shown);
  }

  overwrite.addEventListener('click', () => { if (pending) send(pending); pending = null; });
  cancel.addEventListener('click', () => {
    confirm.hidden = true;
    pending = null;
    say('Upload cancelled: nothing was overwritten.');
  });
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const file = event.dataTransfer.files[0];
    if (!file) return;
    if (!shown) return say('Open a directory first.', true);
    if (entries.some((entry) => entry.name === file.name)) {
      pending = file;
      question.textContent = `${file.name} already exists in ${shown}. Overwrite it?`;
      confirm.hidden = false;
      overwrite.focus();
      return;
    }
    send(file);
  });

  const form = h('form', { class: 'toolbar', onsubmit: (event) => { event.preventDefault(); open(path.value.trim() || '/'); } },
    path, h('button', { type: 'submit', id: 'browse-go' }, 'Open'), message);
  return h('div', { id: 'browser' }, h('h2', {}, 'Files on the device'), form, confirm, zone);
}
