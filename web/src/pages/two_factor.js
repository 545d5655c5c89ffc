// Two-factor authentication on the Account page: enrol (a QR code of the otpauth URI for the
// authenticator app, and the secret as text), confirm with a first code, then the recovery
// codes, shown once; or turn it off with a code.

import qrcode from 'qrcode-generator';
import { HttpError, post } from '../api.js';
import { copyButton, h } from '../dom.js';

/** The otpauth URI as a QR code image (a data: URL, which the Content-Security-Policy allows). */
function qrImage(uri) {
  const code = qrcode(0, 'M');
  code.addData(uri);
  code.make();
  return h('img', { class: 'qr', id: 'two-factor-qr', alt: 'QR code for the authenticator app', src: code.createDataURL(4, 4) });
}

export function twoFactorPanel() {
  const message = h('p', { class: 'notice', id: 'two-factor-message' });
  const step = h('div', { id: 'two-factor-step' });

  const fail = (failure) => {
    message.className = 'error';
    message.textContent = failure.message;
  };
  const say = (text) => {
    message.className = 'notice';
    message.textContent = text;
  };

  function showRecoveryCodes(codes) {
    enrol.hidden = true;
    step.replaceChildren(
      h('p', {}, 'Two-factor authentication is on. Keep these recovery codes somewhere safe: each works once instead of a code, and they are not shown again.'),
      h('ul', { class: 'codes', id: 'recovery-codes' }, codes.map((code) => h('li', {}, code))),
      copyButton(codes.join('\n')));
  }

  function showEnrolment(enrolment) {
    const code = h('input', { id: 'two-factor-code', autocomplete: 'one-time-code', inputmode: 'numeric', placeholder: '123456', size: 8, required: true });
    const confirm = h('form', { class: 'toolbar', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const answer = await post('auth/2fa/confirm', { code: code.value.trim() });
        say('');
        showRecoveryCodes(answer.recovery_codes);
      } catch (failure) { fail(failure); }
    } }, h('label', {}, 'Code from the app ', code), h('button', { type: 'submit', class: 'primary' }, 'Confirm'));
    step.replaceChildren(
      h('p', {}, 'Scan this with an authenticator app, or type the secret into it, then enter the code it shows.'),
      qrImage(enrolment.otpauth_uri),
      h('div', { class: 'toolbar' }, 'Secret: ', h('code', { class: 'command', id: 'two-factor-secret' }, enrolment.secret), copyButton(enrolment.secret)),
      confirm);
    code.focus();
  }

  const enrol = h('button', { type: 'button', id: 'two-factor-enrol', onclick: async () => {
    try {
      showEnrolment(await post('auth/2fa/enrol'));
      say('');
    } catch (failure) {
      if (failure instanceof HttpError && failure.status === 409) say('Two-factor authentication is already on.');
      else fail(failure);
    }
  } }, 'Set up two-factor authentication');

  const disableCode = h('input', { id: 'two-factor-disable-code', autocomplete: 'one-time-code', placeholder: 'code or recovery code', required: true });
  const disable = h('form', { class: 'toolbar', onsubmit: async (event) => {
    event.preventDefault();
    try {
      await post('auth/2fa/disable', { code: disableCode.value.trim() });
      disableCode.value = '';
      step.replaceChildren();
      enrol.hidden = false;
      say('Two-factor authentication is off.');
    } catch (failure) { fail(failure); }
  } }, disableCode, h('button', { type: 'submit' }, 'Turn off'));

  return h('section', { class: 'panel', id: 'two-factor' }, h('h2', {}, 'Two-factor authentication'),
    h('p', { class: 'notice' }, 'With it on, logging in also asks for a code from an authenticator app (TOTP).'),
    h('div', { class: 'toolbar' }, enrol), step, message,
    h('details', {}, h('summary', {}, 'Turn two-factor authentication off'), disable));
}
