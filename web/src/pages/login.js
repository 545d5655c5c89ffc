// The login page: user and password, then, for a user with two-factor authentication, a second
// step asking for the authenticator's code (or a recovery code).

import { CODE_REQUIRED, login } from '../api.js';
import { h } from '../dom.js';

export function loginPage(container, message, done) {
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' });
  const info = h('p', { class: 'notice', id: 'login-notice' }, message || '');
  const username = h('input', { name: 'username', id: 'username', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const code = h('input', { name: 'code', id: 'login-code', autocomplete: 'one-time-code', inputmode: 'numeric', placeholder: '123456 or a recovery code' });
  const codeStep = h('label', { id: 'login-code-step', hidden: true }, 'Two-factor code', code);
  const submit = h('button', { type: 'submit' }, 'Log in');
  const form = h('form', { class: 'login', onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      await login(username.value, password.value, codeStep.hidden ? undefined : code.value.trim());
      done();
    } catch (failure) {
      if (failure.message === CODE_REQUIRED && codeStep.hidden) {
        // The password was right; the hub now wants the second factor.
        codeStep.hidden = false;
        info.textContent = 'Enter the code from your authenticator app.';
        code.focus();
      } else if (!codeStep.hidden) {
        error.textContent = failure.message || 'login failed';
        code.select();
      } else {
        error.textContent = failure.message || 'login failed';
        password.select();
      }
    } finally {
      submit.disabled = false;
    }
  } },
  h('h1', {}, 'Tether'),
  info,
  h('label', {}, 'User', username),
  h('label', {}, 'Password', password),
  codeStep,
  submit,
  error);
  container.append(form);
  username.focus();
}
