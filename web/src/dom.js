// A tiny DOM builder: h('button', {onclick}, 'text') — enough for plain, fast pages.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name in element && typeof value !== 'string') element[name] = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Unix seconds or milliseconds → local date and time. */
export function when(time) {
  if (time === undefined || time === null) return '—';
  const ms = time < 1e12 ? time * 1000 : time;
  return new Date(ms).toLocaleString();
}

/** A duration of `ms` milliseconds in words: "40 s", "2 min 5 s", "1 h 15 min". */
export function spoken(ms) {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

/** "3 min ago" style, for last-seen columns. */
export function ago(time) {
  if (time === undefined || time === null) return 'never';
  const ms = time < 1e12 ? time * 1000 : time;
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function debounce(action, delay) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), delay);
  };
}

export function copyButton(text) {
  const button = h('button', { type: 'button', class: 'small' }, 'Copy');
  button.addEventListener('click', async () => {
    await navigator.clipboard.writeText(typeof text === 'function' ? text() : text);
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = 'Copy'; }, 1500);
  });
  return button;
}
