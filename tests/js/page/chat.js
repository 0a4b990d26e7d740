// A minimal chat page on the `ai` package's own client (AbstractChat, the core
// of React's useChat, with DefaultChatTransport), bundled by esbuild for the
// browser test. It does what `useChat({ resume: true })` does: on load it calls
// `resumeStream()`, which GETs `{api}/{chatId}/stream` and replays the answer in
// progress. Messages are kept in localStorage, as an app would keep them in
// its own store, so a reload shows the conversation so far.
import { AbstractChat, DefaultChatTransport } from 'ai';

const config = window.SPOOL_CHAT;  // { api, key, chatId, body }
const storeKey = `spool-ai-sdk-chat:${config.chatId}`;

function render(state) {
  const list = document.getElementById('messages');
  list.replaceChildren(...state.messages.map((message) => {
    const item = document.createElement('li');
    item.dataset.role = message.role;
    item.dataset.id = message.id;
    item.textContent = message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
    return item;
  }));
  document.getElementById('status').textContent = state.status;
  localStorage.setItem(storeKey, JSON.stringify(state.messages));
}

// The ChatState interface AbstractChat needs; @ai-sdk/react keeps the same in React state.
class PageState {
  constructor(messages) {
    this._messages = messages;
    this._status = 'ready';
    this.error = undefined;
  }
  get status() { return this._status; }
  set status(status) { this._status = status; render(this); }
  get messages() { return this._messages; }
  set messages(messages) { this._messages = messages; render(this); }
  pushMessage = (message) => { this.messages = this._messages.concat(message); };
  popMessage = () => { this.messages = this._messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    const next = this._messages.slice();
    next[index] = this.snapshot(message);
    this.messages = next;
  };
  snapshot = (thing) => structuredClone(thing);
}

class PageChat extends AbstractChat {}

const state = new PageState(JSON.parse(localStorage.getItem(storeKey) ?? '[]'));
const chat = new PageChat({
  id: config.chatId,
  state,
  transport: new DefaultChatTransport({
    api: config.api,
    headers: { Authorization: `Bearer ${config.key}` },
    body: config.body,  // Spool's generation fields (provider, model, mock, …)
  }),
  onError: (error) => { document.getElementById('error').textContent = error.message; },
});
render(state);

document.getElementById('composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = document.getElementById('input');
  chat.sendMessage({ text: input.value });
  input.value = '';
});
window.spoolChat = chat;
chat.resumeStream();  // what useChat({ resume: true }) does on mount
