// The widget's conversation with the hub, without any DOM or words: the visitor socket
// (/webchat/ws) with reconnects and backoff, messages sent with a client_id and sent again (same
// id, stored once) after a reconnect, the HTTP fallback while the socket is down, history paging,
// de-duplication by message id, typing both ways, and the busy retry. Protocol:
// connectors/webchat/README.md. The UI (app.mjs) reads the fields and is told of every change.

const PING_EVERY = 25000;
const STALE_AFTER = 60000;   // nothing received for this long: the connection is dead
const CONNECT_TIMEOUT = 10000;
const FALLBACK_AFTER = 5000; // socket down this long: send queued messages over HTTP
const BACKOFF_MIN = 500, BACKOFF_MAX = 10000;
const BUSY_RETRY = 1000;     // a message refused as busy is sent again after about this long
const HISTORY_PAGE = 200;    // messages the server returns at most per welcome or history call
const CACHE_LIMIT = 100;     // messages kept in localStorage to redraw the chat on reload
const TYPING_EVERY = 3000;   // "composing" is sent at most this often
const TYPING_IDLE = 5000;    // no key for this long: "paused"
const AGENT_TYPING_FOR = 8000; // a lost "paused" must not leave "is typing" showing
const SURVEY_ERRORS = new Set(['invalid_rating', 'invalid_comment', 'survey_not_found', 'survey_answered']);

// localStorage throws in sandboxed frames and some privacy modes: memory only, then.
export const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* memory only */ } },
};

export const uuid = () => (crypto.randomUUID ? crypto.randomUUID() // secure contexts only
  : '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
    (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)));

export class Chat {
  /** origin: the hub's; hello: extra fields of the hello frame (name, email); language(): the
   * widget's language now; onChange(): something shown changed; onIncoming(m): a reply arrived live. */
  constructor({ origin, hello = {}, language = () => undefined, onChange = () => {}, onIncoming = () => {} }) {
    this.origin = origin;
    this.wsUrl = origin.replace(/^http/, 'ws') + '/webchat/ws'; // http→ws, https→wss
    this.helloExtra = hello;
    this.language = language;
    this.onChange = onChange;
    this.onIncoming = onIncoming;
    this.keys = { visitor: `channelhub.visitor:${origin}`, since: `channelhub.since:${origin}`,
                  cache: `channelhub.messages:${origin}` };

    this.visitorId = store.get(this.keys.visitor) || null;
    // `since` only advances on messages from the server's ordered stream (welcome, pushes,
    // history). Acks and HTTP POST answers don't move it: an agent reply with a lower id may
    // still be on its way, and skipping past it would lose it on the next reconnect.
    this.since = 0;
    this.messages = new Map(); // id -> confirmed message
    // Messages not confirmed yet, in the order written: client_id -> {text, attachments (ids),
    // files (what to show), sent, failed, reason}. A failed one stays, marked, until a reload.
    this.outbox = new Map();
    this.status = 'connecting';  // connecting | online | offline
    this.flash = null;           // a transient error while connected: {code, message}
    this.agentsOnline = null;    // unknown until the welcome
    this.words = { offline_message: {}, greeting: {} };
    this.uploads = null;         // {max_bytes, types} from the welcome
    this.agentTyping = null;     // {name} while an agent types
    // A satisfaction survey (core.csat) to show: {token, state: open | sending | done, error}.
    this.survey = null;

    this.ws = null;
    this.ready = false;          // between "welcome" and close
    this.attempt = 0;            // reconnects since the last welcome
    this.downSince = Date.now(); // since when we have had no working socket (0: we have one)
    this.lastRx = 0;
    this.timers = { retry: 0, ping: 0, fallback: 0, connect: 0, flash: 0, typingIdle: 0, agentTyping: 0 };
    this.httpChain = Promise.resolve(); // HTTP calls run one at a time, and before "hello"
    this.typingState = 'paused';
    this.typingAt = 0;
    this.visitorWaiters = [];
  }

  start() {
    this.loadCache();
    this.connect();
    // Back online or back in view: don't wait for the rest of the backoff.
    const retryNow = () => { if (!this.ws) { this.attempt = 0; this.connect(); } };
    window.addEventListener('online', retryNow);
    document.addEventListener('visibilitychange', () => { if (!document.hidden) retryNow(); });
  }

  changed() { this.onChange(); }

  /** The visitor id, once the hub has given one (uploads need it). */
  visitor() {
    if (this.visitorId) return Promise.resolve(this.visitorId);
    if (!this.ws) this.connect();
    return new Promise((resolve) => this.visitorWaiters.push(resolve));
  }

  setVisitor(id) {
    if (!id || id === this.visitorId) return;
    this.visitorId = id;
    store.set(this.keys.visitor, id);
    for (const resolve of this.visitorWaiters.splice(0)) resolve(id);
  }

  // ---- messages ----------------------------------------------------------------------------
  /** Confirmed messages in id order. */
  confirmed() { return [...this.messages.values()].sort((a, b) => a.id - b.id); }

  add(m, { live = true } = {}) {
    if (!m || !Number.isInteger(m.id) || this.messages.has(m.id)) return; // de-duplicate by id
    this.messages.set(m.id, m);
    if (live && m.direction !== 'inbound') this.onIncoming(m);
  }

  // Messages from the server's ordered stream: keep, advance `since`, persist.
  receive(list, advance) {
    for (const m of list || []) {
      this.add(m);
      if (advance && m && Number.isInteger(m.id) && m.id > this.since) this.since = m.id;
    }
    this.saveCache();
    this.changed();
  }

  saveCache() {
    if (!this.visitorId) return;
    const kept = this.confirmed().slice(-CACHE_LIMIT);
    store.set(this.keys.cache, JSON.stringify({ visitor_id: this.visitorId, messages: kept }));
    store.set(this.keys.since, String(this.since));
  }

  // Redraw the conversation after a reload. `since` is only trusted together with the cached
  // transcript; min() covers two tabs having written the two keys at different times.
  loadCache() {
    try {
      const cached = JSON.parse(store.get(this.keys.cache) || 'null');
      if (!this.visitorId || !cached || cached.visitor_id !== this.visitorId) return;
      for (const m of cached.messages) this.add(m, { live: false });
      const maxId = Math.max(0, ...this.messages.keys());
      this.since = Math.min(parseInt(store.get(this.keys.since), 10) || 0, maxId);
    } catch { /* corrupt cache: start from full history */ }
  }

  resetTranscript() {
    this.messages.clear();
    this.since = 0;
  }

  // ---- sending ------------------------------------------------------------------------------
  /** Send a message: text and the ids of uploaded files (files: what to show meanwhile). */
  send(text, attachments = [], files = []) {
    text = String(text == null ? '' : text).trim();
    if (!text && !attachments.length) return null;
    const clientId = uuid();
    const p = { text, attachments: [...attachments], files: [...files], sent: false, failed: false };
    this.outbox.set(clientId, p);
    this.changed();
    if (this.ready) {
      this.transmit(clientId, p);
    } else {
      this.armFallback();
      if (!this.ws) this.connect(); // writing is a good reason to skip the rest of the backoff
    }
    return clientId;
  }

  pending() { return [...this.outbox].filter(([, p]) => !p.failed); }

  transmit(clientId, p) {
    const frame = { type: 'message', client_id: clientId, text: p.text };
    if (p.attachments.length) frame.attachments = p.attachments;
    this.frame(frame);
    p.sent = true; // may have reached the server even if no ack ever comes back
  }

  // The server's copy of a pending message arrived (ack or HTTP answer): swap it in.
  confirm(clientId, m) {
    this.outbox.delete(clientId);
    this.add(m, { live: false });
    this.saveCache();
    this.changed();
  }

  retryLater(clientId) {
    setTimeout(() => {
      const p = this.outbox.get(clientId);
      if (p && !p.failed && this.ready) this.transmit(clientId, p); // else the next welcome resends it
    }, BUSY_RETRY / 2 + Math.random() * BUSY_RETRY);
  }

  fail(clientId, error) {
    const p = this.outbox.get(clientId);
    if (!p || p.failed) return;
    p.failed = true;
    p.reason = error;
    this.showError(error);
  }

  // A transient error while connected: shown for a while, then back to the status.
  showError(error) {
    clearTimeout(this.timers.flash);
    this.flash = error;
    this.timers.flash = setTimeout(() => { this.flash = null; this.changed(); }, 6000);
    this.changed();
  }

  // ---- websocket ----------------------------------------------------------------------------
  isOpen() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  frame(obj) { if (this.isOpen()) this.ws.send(JSON.stringify(obj)); }

  /** Answer the survey shown: a rating 1-5 and an optional comment, over the socket. */
  rate(rating, comment) {
    if (!this.survey || this.survey.state !== 'open' || !this.isOpen()) return false;
    this.survey.state = 'sending';
    this.survey.error = null;
    this.frame({ type: 'csat', token: this.survey.token, rating, comment: comment || null });
    this.changed();
    return true;
  }

  setStatus(status) {
    if (status !== 'online') { clearTimeout(this.timers.flash); this.flash = null; }
    this.status = status;
    this.changed();
  }

  connect() {
    clearTimeout(this.timers.retry);
    if (this.ws) return;
    let sock;
    try {
      sock = new WebSocket(this.wsUrl);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = sock;
    // A connect that hangs (e.g. packets silently dropped) would never fire "close".
    this.timers.connect = setTimeout(() => this.lost(sock), CONNECT_TIMEOUT);
    sock.onopen = () => {
      clearTimeout(this.timers.connect);
      this.lastRx = Date.now();
      // Wait for HTTP posts in flight: the first may be creating our visitor id.
      this.httpChain.then(() => {
        if (this.ws !== sock) return;
        this.frame({ type: 'hello', visitor_id: this.visitorId, since: this.since, page: location.href,
                     language: this.language() || navigator.language || undefined, ...this.helloExtra });
      });
    };
    sock.onmessage = (ev) => { if (this.ws === sock) this.onFrame(ev.data); };
    sock.onclose = () => this.lost(sock);
  }

  // The socket is gone (closed, timed out or stale). Idempotent per socket.
  lost(sock) {
    if (!sock || this.ws !== sock) return;
    this.ws = null;
    this.ready = false;
    clearTimeout(this.timers.connect);
    clearInterval(this.timers.ping);
    sock.close(); // no-op if already closing
    if (!this.downSince) this.downSince = Date.now();
    this.setStatus('offline');
    this.armFallback();
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.timers.retry);
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
    this.attempt += 1;
    this.timers.retry = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2); // jitter
    if (Date.now() - this.downSince >= FALLBACK_AFTER) this.fallback();
  }

  onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    this.lastRx = Date.now();
    switch (f.type) {
      case 'welcome': this.onWelcome(f); break;
      case 'message':
        if (f.message && f.message.direction === 'outbound') this.heardTyping({ state: 'paused' });
        this.receive([f.message], true);
        break;
      case 'ack': this.confirm(f.client_id, f.message); break;
      case 'typing': this.heardTyping(f); break;
      case 'agents':
        this.agentsOnline = Boolean(f.online);
        this.changed();
        break;
      case 'csat':
        if (f.survey && typeof f.survey.token === 'string'
            && !(this.survey && this.survey.token === f.survey.token)) {
          this.survey = { token: f.survey.token, state: 'open', error: null };
          this.changed();
        }
        break;
      case 'csat_done':
        if (this.survey && this.survey.token === f.token) { this.survey.state = 'done'; this.changed(); }
        break;
      case 'error': {
        const error = { code: f.code, message: f.message };
        if (this.survey && this.survey.state === 'sending' && SURVEY_ERRORS.has(f.code)) {
          // A rating refused (or answered already, from another tab): said on the card itself.
          this.survey.state = f.code === 'survey_answered' ? 'done' : 'open';
          this.survey.error = error;
          this.changed();
          break;
        }
        const p = f.client_id && this.outbox.get(f.client_id);
        // busy: the server was overloaded and stored nothing; the same client_id is sent again.
        if (p && !p.failed && f.code === 'busy') this.retryLater(f.client_id);
        else if (p && !p.failed) this.fail(f.client_id, error);
        else this.showError(error);
        break;
      }
      default: break; // pong, or a frame type this version does not know
    }
  }

  onWelcome(f) {
    this.ready = true;
    this.attempt = 0;
    this.downSince = 0;
    clearTimeout(this.timers.fallback);
    this.timers.fallback = 0;
    if (f.visitor_id && f.visitor_id !== this.visitorId) {
      if (this.visitorId) this.resetTranscript(); // the server did not know us: a new conversation
      this.setVisitor(f.visitor_id);
    }
    if (typeof f.agents_online === 'boolean') this.agentsOnline = f.agents_online;
    this.words = { offline_message: objectOf(f.offline_message), greeting: objectOf(f.greeting) };
    if (f.uploads && Number.isInteger(f.uploads.max_bytes) && Array.isArray(f.uploads.types)) this.uploads = f.uploads;
    const list = Array.isArray(f.messages) ? f.messages : [];
    // A message sent just before the socket died may have been stored without its ack
    // reaching us; it then shows up here. Match it to the pending copy instead of resending.
    for (const m of list) {
      if (!m || m.direction !== 'inbound' || this.messages.has(m.id)) continue;
      const files = Array.isArray(m.attachments) ? m.attachments.length : 0;
      for (const [cid, p] of this.pending()) {
        if (p.sent && p.text === m.text && p.attachments.length === files) { this.confirm(cid, m); break; }
      }
    }
    this.receive(list, true);
    // A full page: more may wait after it (a socket cut off as too slow); page on from `since`.
    if (list.length >= HISTORY_PAGE) this.httpChain = this.httpChain.then(() => this.catchUp()).catch(() => {});
    this.setStatus('online');
    clearInterval(this.timers.ping);
    this.timers.ping = setInterval(() => this.ping(), PING_EVERY);
    for (const [cid, p] of this.pending()) this.transmit(cid, p); // same client_id as any earlier try
  }

  ping() {
    if (Date.now() - this.lastRx > STALE_AFTER) this.lost(this.ws); // half-open connection: start over
    else this.frame({ type: 'ping' });
  }

  // ---- HTTP fallback ------------------------------------------------------------------------
  armFallback() {
    if (this.timers.fallback || !this.pending().length || !this.downSince) return;
    this.timers.fallback = setTimeout(() => {
      this.timers.fallback = 0;
      if (!this.isOpen()) this.fallback();
    }, Math.max(0, this.downSince + FALLBACK_AFTER - Date.now()));
  }

  // Called while the socket is down: post queued messages, then poll for replies.
  fallback() {
    this.httpChain = this.httpChain.then(() => this.postQueued()).then(() => this.pollHistory()).catch(() => {});
  }

  async postQueued() {
    for (const [cid, p] of this.pending()) {
      if (this.isOpen()) return; // the socket is back; it resends whatever is left
      let res, body;
      try {
        const message = { visitor_id: this.visitorId, client_id: cid, text: p.text };
        if (p.attachments.length) message.attachments = p.attachments;
        res = await fetch(`${this.origin}/webchat/messages`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(message),
          signal: AbortSignal.timeout(10000),
        });
        body = await res.json().catch(() => ({}));
      } catch {
        return; // still offline: retried on the next reconnect attempt
      }
      if (res.ok) {
        this.setVisitor(body.visitor_id);
        this.confirm(cid, body.message);
      } else if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        this.fail(cid, { code: (body.error && body.error.code) || 'http', message: body.error && body.error.message,
                         status: res.status });
      } else {
        return; // server trouble: try again later
      }
    }
  }

  historyUrl() {
    return `${this.origin}/webchat/history?visitor_id=${encodeURIComponent(this.visitorId)}&since=${this.since}`;
  }

  async catchUp() {
    for (;;) {
      const res = await fetch(this.historyUrl(), { signal: AbortSignal.timeout(10000) });
      if (!res.ok) return;
      const page = (await res.json()).messages || [];
      this.receive(page, true);
      if (page.length < HISTORY_PAGE) return;
    }
  }

  async pollHistory() {
    if (!this.visitorId || this.isOpen()) return;
    const res = await fetch(this.historyUrl(), { signal: AbortSignal.timeout(10000) });
    if (res.ok) this.receive((await res.json()).messages, true);
  }

  // ---- typing, both ways (never stored) -----------------------------------------------------
  // "composing" at most every few seconds while the customer types, "paused" once they stop or
  // send; the agent's shows under the messages.
  typing(state) {
    clearTimeout(this.timers.typingIdle);
    if (state === 'composing') this.timers.typingIdle = setTimeout(() => this.typing('paused'), TYPING_IDLE);
    const now = Date.now();
    if (state === this.typingState && (state === 'paused' || now - this.typingAt < TYPING_EVERY)) return;
    this.typingState = state;
    this.typingAt = now;
    if (this.ready) this.frame({ type: 'typing', state });
  }

  heardTyping(f) {
    clearTimeout(this.timers.agentTyping);
    const on = f.state === 'composing';
    const name = f.by && typeof f.by.name === 'string' ? f.by.name : '';
    const was = this.agentTyping;
    this.agentTyping = on ? { name } : null;
    if (on) this.timers.agentTyping = setTimeout(() => { this.agentTyping = null; this.changed(); }, AGENT_TYPING_FOR);
    if (on || was) this.changed();
  }
}

function objectOf(value) {
  return value && typeof value === 'object' && !Array.isArray(value) ? value : {};
}
