// One device: a terminal (connect, reconnect, follows the window's size), file download by
// path and upload by picking or dropping (with progress) through the hub's HTTP file API, and
// the `tether port-forward` command to copy.

import { API, csrfHeaders, get, put, sessionExpired, user } from '../api.js';
import { ago, copyButton, h } from '../dom.js';
import { connectTerminal, createTerminal, enableClipboard } from '../terminal.js';

function filesUrl(device, what) {
  return `${API}/deviceconnect/devices/${encodeURIComponent(device.id)}/${what}`;
}

function terminalPanel(device) {
  const box = h('div', { class: 'terminal-box', id: 'terminal' });
  const status = h('span', { id: 'terminal-status', class: 'notice' }, 'Not connected.');
  const connectButton = h('button', { type: 'button', class: 'primary', id: 'connect' }, 'Connect terminal');
  const disconnectButton = h('button', { type: 'button', id: 'disconnect', disabled: true }, 'Disconnect');
  const panel = h('section', { class: 'panel' },
    h('div', { class: 'status-line' }, connectButton, disconnectButton, status), box);
  let terminal = null;
  let fit = null;
  let session = null;

  const refit = () => { if (fit) fit.fit(); };
  const observer = new ResizeObserver(refit);

  function report(state, text) {
    status.textContent = text;
    status.className = state === 'failed' ? 'error' : 'notice';
    status.dataset.state = state;
    const live = state === 'connecting' || state === 'connected';
    connectButton.disabled = live;
    disconnectButton.disabled = !live;
    connectButton.textContent = state === 'connecting' || state === 'connected' ? 'Connect terminal' : (terminal && state !== 'idle' ? 'Reconnect' : 'Connect terminal');
  }

  connectButton.addEventListener('click', () => {
    if (!terminal) {
      ({ terminal, fit } = createTerminal(box));
      enableClipboard(terminal);
      observer.observe(box);
      window.addEventListener('resize', refit);
    } else {
      terminal.reset();
    }
    if (session) session.dispose();
    fit.fit();
    session = connectTerminal(device, terminal, fit, report);
  });
  disconnectButton.addEventListener('click', () => session && session.disconnect());

  return {
    panel,
    cleanup() {
      if (session) session.disconnect();
      observer.disconnect();
      window.removeEventListener('resize', refit);
      if (terminal) terminal.dispose();
    },
  };
}

function downloadPanel(device) {
  const path = h('input', { id: 'download-path', placeholder: '/absolute/path/on/the/device', size: 40 });
  const message = h('span', { class: 'notice', id: 'download-status' });
  const form = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    const url = `${filesUrl(device, 'download')}?path=${encodeURIComponent(path.value)}`;
    message.className = 'notice';
    message.textContent = 'Checking…';
    // A HEAD first turns a refusal into a message instead of a downloaded error page.
    const check = await fetch(url, { method: 'HEAD', credentials: 'same-origin' });
    if (check.status === 401) return sessionExpired();
    if (!check.ok) {
      const answer = await fetch(url, { credentials: 'same-origin' }).then((r) => r.json()).catch(() => ({}));
      message.className = 'error';
      message.textContent = answer.error || `download refused (${check.status})`;
      return;
    }
    const size = check.headers.get('content-length');
    message.textContent = `Downloading${size ? ` ${size} bytes` : ''}…`;
    const link = h('a', { href: url, download: path.value.split('/').pop() || 'download' });
    document.body.append(link);
    link.click();
    link.remove();
  } }, path, h('button', { type: 'submit', id: 'download' }, 'Download'), message);
  return h('div', {}, h('h2', {}, 'Download a file'), form);
}

function uploadPanel(device) {
  const directory = h('input', { id: 'upload-dir', placeholder: '/destination/directory', size: 40 });
  const picker = h('input', { type: 'file', id: 'upload-file' });
  const progress = h('progress', { max: 1, value: 0, hidden: true, id: 'upload-progress' });
  const message = h('span', { class: 'notice', id: 'upload-status' });
  const zone = h('div', { class: 'dropzone', id: 'dropzone' }, 'Drop a file here, or pick one: ', picker);

  function upload(file) {
    const target = `${directory.value.replace(/\/+$/, '')}/${file.name}`;
    if (!directory.value.startsWith('/')) {
      message.className = 'error';
      message.textContent = 'Give an absolute destination directory first.';
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
      if (request.status === 401) return sessionExpired();
      if (request.status >= 200 && request.status < 300) {
        progress.value = 1;
        message.textContent = `Uploaded ${answer.path || target} (${answer.size ?? file.size} bytes, sha256 ${String(answer.sha256 || '').slice(0, 12)}…)`;
        message.dataset.done = 'true';
      } else {
        message.className = 'error';
        message.textContent = answer.error || `upload failed (${request.status})`;
      }
    });
    request.addEventListener('error', () => {
      message.className = 'error';
      message.textContent = 'upload failed: connection lost';
    });
    request.send(form);
  }

  picker.addEventListener('change', () => { if (picker.files[0]) upload(picker.files[0]); });
  zone.addEventListener('dragover', (event) => { event.preventDefault(); zone.classList.add('over'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    if (event.dataTransfer.files[0]) upload(event.dataTransfer.files[0]);
  });
  return h('div', {}, h('h2', {}, 'Upload a file'),
    h('div', { class: 'toolbar' }, h('label', {}, 'Destination directory ', directory)),
    zone, h('div', { class: 'toolbar' }, progress, message));
}

function portForwardPanel(device) {
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

export function devicePage(container, id) {
  let terminal = null;
  const heading = h('h1', {}, 'Device');
  const details = h('p', { class: 'notice' });
  container.append(heading, details);
  get(`devices?search=${encodeURIComponent(id)}`).then((list) => {
    const device = list.devices.find((d) => d.id === id);
    if (!device) {
      details.className = 'error';
      details.textContent = 'No such device.';
      return;
    }
    heading.textContent = device.name;
    details.textContent = `${device.online ? 'online' : 'offline'} · last seen ${ago(device.last_seen_at)} · agent ${device.agent_version || 'unknown'} · ${device.id}`;
    terminal = terminalPanel(device);
    container.append(tagsLine(device), terminal.panel,
      h('section', { class: 'panel' }, downloadPanel(device), uploadPanel(device), portForwardPanel(device)),
      h('p', {}, h('a', { href: `#/recordings/${encodeURIComponent(device.id)}` }, 'Recorded sessions of this device')));
  }).catch((failure) => {
    details.className = 'error';
    details.textContent = failure.message;
  });
  return () => terminal && terminal.cleanup();
}
