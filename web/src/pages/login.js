// The login page. A second factor, when the hub has one, becomes a second step here.

import { login } from '../api.js';
import { h } from '../dom.js';

export function loginPage(container, message, done) {
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const info = h('p', { class: 'notice', id: 'login-notice' }, message || '');
  const username = h('input', { name: 'username', id: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h('form', { class: 'login', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      await login(username.value, password.value);
      done();
    } catch (failure) {
      error.textContent = failure.message || 'login failed';
      password.select();
    } finally {
      submit.disabled = false;
    }
  } },
  h('h1', {}, 'Tether'),
  info,
  h('label', {}, 'User', username),
  h('label', {}, 'Password', password),
  submit,
  error);
  container.append(form);
  username.focus();
}
