// The agent websocket (/agent/ws, docs/agent-protocol.md): hello with the token and the last event
// seen, the welcome snapshot, live events, actions with refs and their results, a ping when idle,
// and reconnecting with backoff and jitter. An action in flight when the socket drops is failed,
// not resent: the agent sees its outcome in the thread after reconnecting (no duplicates; a reply
// resent by the agent carries the same client_id, so the hub stores it once).

const PING_EVERY = 20000;
const STALE_AFTER = 50000; // no frame for this long: the socket is dead
const ACTION_TIMEOUT = 15000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 10000;

export class Live {
  constructor({ onWelcome, onEvent, onLive, onState, onUnauthorized, onError, words }) {
    Object.assign(this, { onWelcome, onEvent, onLive, onState, onUnauthorized, onError, words });
    this.ws = null;
    this.ready = false;
    this.token = null;
    this.since = null;
    this.attempt = 0;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.lastRx = 0;
    this.refSeq = 0;
    this.inflight = new Map();
    window.addEventListener('online', () => { if (!this.ws && this.token) { this.attempt = 0; this.connect(); } });
  }

  start(token) {
    this.token = token;
    this.connect();
  }

  stop() {
    this.token = null;
    clearTimeout(this.retryTimer);
    if (this.ws) this.lost(this.ws, false);
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.ws || !this.token) return;
    const sock = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/agent/ws`);
    this.ws = sock;
    sock.onopen = () => {
      this.lastRx = Date.now();
      sock.send(JSON.stringify({ type: 'hello', token: this.token, since: this.since }));
    };
    sock.onmessage = (ev) => { if (this.ws === sock) this.frame(ev.data); };
    sock.onclose = () => this.lost(sock, true);
  }

  lost(sock, retry) {
    if (this.ws !== sock) return;
    this.ws = null;
    this.ready = false;
    clearInterval(this.pingTimer);
    sock.close();
    this.onState(false);
    for (const [ref, p] of this.inflight) {
      clearTimeout(p.timer);
      p.reject(new Error(this.words('error.lost')));
      this.inflight.delete(ref);
    }
    if (retry && this.token) {
      const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
      this.attempt += 1;
      this.retryTimer = setTimeout(() => this.connect(), base / 2 + Math.random() * base / 2);
    }
  }

  send(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  action(frame) {
    return new Promise((resolve, reject) => {
      if (!this.ready) { reject(new Error(this.words('error.not_connected'))); return; }
      const ref = `r${Date.now().toString(36)}-${++this.refSeq}`;
      const timer = setTimeout(() => {
        this.inflight.delete(ref);
        reject(new Error(this.words('error.no_answer')));
      }, ACTION_TIMEOUT);
      this.inflight.set(ref, { resolve, reject, timer });
      this.send({ ...frame, ref });
    });
  }

  seen(eventId) {
    if (Number.isInteger(eventId) && (this.since == null || eventId > this.since)) this.since = eventId;
  }

  frame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    this.lastRx = Date.now();
    if (f.type === 'welcome') {
      this.ready = true;
      this.attempt = 0;
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (Date.now() - this.lastRx > STALE_AFTER) this.lost(this.ws, true);
        else this.send({ type: 'ping' });
      }, PING_EVERY);
      this.seen(f.last_event_id);
      this.onState(true);
      this.onWelcome(f);
    } else if (f.type === 'event') {
      if (f.event) this.seen(f.event.id);
      this.onEvent(f.event);
    } else if (f.type === 'typing' || f.type === 'viewing') {
      this.onLive(f);
    } else if (f.type === 'result') {
      const p = this.inflight.get(f.ref);
      if (!p) return;
      this.inflight.delete(f.ref);
      clearTimeout(p.timer);
      if (f.ok) p.resolve(f.data || {});
      else {
        const err = new Error((f.error && f.error.message) || this.words('error.failed'));
        err.code = f.error && f.error.code;
        p.reject(err);
      }
    } else if (f.type === 'error') {
      if (f.code === 'unauthorized' || f.code === 'invalid_token') this.onUnauthorized();
      else this.onError(f.message || f.code);
    }
  }
}
