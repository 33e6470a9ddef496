// <ts-reset-button>: the emergency reset, behind a confirmation dialog that says what it does.

import { announce, manager } from './context.js';
import { h, setText } from './dom.js';

export class ResetButton extends HTMLElement {
  #button = h('button', { type: 'button', class: 'btn btn-danger-outline btn-small', dataset: { action: 'open' }, 'aria-haspopup': 'dialog' }, 'Emergency reset');
  #dialog = null;
  #text = h('p', { id: 'reset-text' });
  #error = h('p', { class: 'form-error', role: 'alert' });
  #confirm = h('button', { type: 'button', class: 'btn btn-danger', dataset: { action: 'confirm' } }, 'Cancel every task');
  #onClick = (event) => this.#click(event);

  connectedCallback() {
    if (!this.#dialog) {
      this.#dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'reset-title', 'aria-describedby': 'reset-text' },
        h('h2', { id: 'reset-title' }, 'Emergency reset?'),
        this.#text,
        this.#error,
        h('div', { class: 'form-actions' },
          h('button', { type: 'button', class: 'btn', dataset: { action: 'close' }, autofocus: true }, 'Keep everything running'),
          this.#confirm));
      this.replaceChildren(this.#button, this.#dialog);
    }
    this.addEventListener('click', this.#onClick);
  }

  disconnectedCallback() {
    this.removeEventListener('click', this.#onClick);
  }

  async #click(event) {
    const button = event.target.closest('button[data-action]');
    if (!button || !this.contains(button)) return;
    const action = button.dataset.action;
    if (action === 'open') {
      const n = manager().activeTasks.length;
      setText(this.#text, `This cancels every active task (${n} now) and stops every running job, ` +
        'services included. Use it when tasks are stuck. It cannot be undone.');
      setText(this.#error, '');
      this.#confirm.disabled = false;
      this.#dialog.showModal();
    } else if (action === 'close') {
      this.#dialog.close();
    } else if (action === 'confirm') {
      this.#confirm.disabled = true;
      try {
        const count = await manager().resetAgentState();
        this.#dialog.close();
        announce(`Emergency reset: ${count} task${count === 1 ? '' : 's'} cancelled`, { tone: 'warn' });
      } catch (error) {
        setText(this.#error, `The reset failed: ${error.message}`);
        this.#confirm.disabled = false;
      }
    }
  }
}

export function registerResetButton() {
  if (!customElements.get('ts-reset-button')) customElements.define('ts-reset-button', ResetButton);
}
