/*! channelhub web chat widget — embed with one tag:
 *   <script src="https://<tenant host>/webchat/widget.js" async></script>
 * (optional data-name / data-email on it are sent in "hello"). No dependencies. It talks to
 * the server that served it (the tenant is that Host): /webchat/ws, HTTP when that fails.
 */
(() => {
  'use strict';
  if (window.ChannelHubWidget) return; // included twice: keep the first instance

  // ---- where we were loaded from
  const SCRIPT_PATH = '/webchat/widget.js';
  // document.currentScript is null for async scripts in some cases, so also look for our tag.
  const script = (document.currentScript && document.currentScript.src)
    ? document.currentScript
    : [...document.scripts].find((s) => s.src && s.src.split(/[?#]/)[0].endsWith(SCRIPT_PATH));
  const ORIGIN = new URL(script ? script.src : location.href).origin;
  const WS_URL = ORIGIN.replace(/^http/, 'ws') + '/webchat/ws'; // http→ws, https→wss

  const PING_EVERY = 25000;
  const STALE_AFTER = 60000;   // nothing received for this long: the connection is dead
  const CONNECT_TIMEOUT = 10000;
  const FALLBACK_AFTER = 5000; // socket down this long: send queued messages over HTTP
  const BACKOFF_MIN = 500, BACKOFF_MAX = 10000;
  const BUSY_RETRY = 1000;     // a message refused as busy is sent again after about this long
  const HISTORY_PAGE = 200;    // messages the server returns at most per welcome or history call
  const CACHE_LIMIT = 100;     // messages kept in localStorage to redraw the chat on reload

  // ---- storage (throws in sandboxed frames and some privacy modes)
  const K_VISITOR = `channelhub.visitor:${ORIGIN}`;
  const K_SINCE = `channelhub.since:${ORIGIN}`;
  const K_CACHE = `channelhub.messages:${ORIGIN}`;
  const store = {
    get(k) { try { return localStorage.getItem(k); } catch { return null; } },
    set(k, v) { try { localStorage.setItem(k, v); } catch { /* memory only, then */ } },
  };

  // ---- state
  let visitorId = store.get(K_VISITOR) || null;
  // `since` only advances on messages from the server's ordered stream (welcome, pushes,
  // history). Acks and HTTP POST answers don't move it: an agent reply with a lower id may
  // still be on its way, and skipping past it would lose it on the next reconnect.
  let since = 0;
  const messages = new Map(); // id -> confirmed message
  const shown = new Map();    // id -> its element
  const pending = new Map();  // client_id -> { text, el, sent }  (insertion order = send order)
  let ws = null;
  let ready = false;          // between "welcome" and close
  let attempt = 0;            // reconnects since the last welcome
  let downSince = Date.now(); // since when we have had no working socket (0: we have one)
  let lastRx = 0, unread = 0;
  let retryTimer = 0, pingTimer = 0, fallbackTimer = 0, connectTimer = 0, statusTimer = 0;
  let httpChain = Promise.resolve(); // HTTP calls run one at a time, and before "hello"

  const uuid = () => (crypto.randomUUID ? crypto.randomUUID()  // secure contexts only
    : '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16)));

  // ---- DOM
  const R = '#channelhub-widget';
  const BLUE = '#2563eb';
  const CSS = `
${R}{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;text-align:left}
${R} *,${R} *::before,${R} *::after{box-sizing:border-box;margin:0;font:inherit;letter-spacing:normal;text-transform:none}
${R} [hidden]{display:none!important}
${R} .chw-launcher{position:relative;width:56px;height:56px;padding:0;border:0;border-radius:50%;background:${BLUE};color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center}
${R} .chw-launcher svg{width:28px;height:28px;fill:currentColor}
${R} .chw-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font-size:12px;line-height:20px;text-align:center}
${R} .chw-panel{position:absolute;right:0;bottom:72px;width:340px;max-width:calc(100vw - 40px);height:480px;max-height:calc(100vh - 112px);display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);overflow:hidden}
${R} .chw-header{display:flex;align-items:center;justify-content:space-between;padding:12px 14px;background:${BLUE};color:#fff;font-weight:600}
${R} .chw-close{padding:0 4px;border:0;background:none;color:inherit;font-size:20px;line-height:1;cursor:pointer}
${R} .chw-status{padding:4px 14px;font-size:12px;color:#57606a;background:#f6f8fa;border-bottom:1px solid #eaeef2}
${R} .chw-status[data-state=online]{color:#1a7f37}
${R} .chw-status[data-state=error]{color:#cf222e}
${R} .chw-messages{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px}
${R} .chw-msg{max-width:80%;padding:8px 11px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}
${R} .chw-inbound{align-self:flex-end;background:${BLUE};color:#fff;border-bottom-right-radius:4px}
${R} .chw-outbound{align-self:flex-start;background:#eef1f4;border-bottom-left-radius:4px}
${R} .chw-outbound[data-author]::before{content:attr(data-author);display:block;margin-bottom:2px;font-size:11px;font-weight:600;color:#57606a}
${R} .chw-file{display:block;margin-top:4px;color:inherit;text-decoration:underline}
${R} .chw-pending{opacity:.6}
${R} .chw-failed{background:#cf222e;cursor:help}
${R} .chw-compose{display:flex;gap:8px;padding:10px;border-top:1px solid #eaeef2}
${R} .chw-input{flex:1;height:40px;max-height:120px;padding:9px 10px;resize:none;border:1px solid #d0d7de;border-radius:8px;outline:none;background:#fff;color:#1f2328}
${R} .chw-input:focus{border-color:${BLUE}}
${R} .chw-typing{padding:2px 14px 4px;font-size:12px;color:#57606a;font-style:italic}
${R} .chw-send{padding:0 14px;border:0;border-radius:8px;background:${BLUE};color:#fff;font-weight:600;cursor:pointer}
`;
  // Static markup only: every piece of user or server text goes in via textContent.
  const TEMPLATE = `
<button id="chw-launcher" class="chw-launcher" type="button" aria-label="Open chat" aria-controls="chw-panel" aria-expanded="false">
  <svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>
  <span class="chw-badge" hidden></span>
</button>
<div id="chw-panel" class="chw-panel" role="dialog" aria-label="Chat with us" hidden>
  <div class="chw-header"><span class="chw-title">Chat with us</span><button class="chw-close" type="button" aria-label="Close chat">&times;</button></div>
  <div id="chw-status" class="chw-status" role="status">connecting…</div>
  <div id="chw-messages" class="chw-messages" role="log" aria-live="polite"></div>
  <div id="chw-typing" class="chw-typing" aria-live="polite" hidden></div>
  <form class="chw-compose">
    <textarea id="chw-input" class="chw-input" rows="1" placeholder="Type a message…" aria-label="Message"></textarea>
    <button id="chw-send" class="chw-send" type="submit">Send</button>
  </form>
</div>`;

  const root = document.createElement('div');
  root.id = 'channelhub-widget';
  root.innerHTML = TEMPLATE;
  const q = (sel) => root.querySelector(sel);
  const launcher = q('#chw-launcher');
  const badge = q('.chw-badge');
  const panel = q('#chw-panel');
  const statusEl = q('#chw-status');
  const list = q('#chw-messages');
  const input = q('#chw-input');
  const typingEl = q('#chw-typing');

  function mount() {
    const style = document.createElement('style');
    style.id = 'chw-style';
    style.textContent = CSS;
    (document.head || document.body).appendChild(style);
    document.body.appendChild(root);
    if (location.hash === '#chat') open();
  }

  function setStatus(text, state = '') {
    clearTimeout(statusTimer);
    statusEl.textContent = text;
    statusEl.dataset.state = state;
  }

  // A transient error while connected: show it, then go back to "online".
  function flashError(text) {
    setStatus(text, 'error');
    statusTimer = setTimeout(() => { if (ready) setStatus('online', 'online'); }, 6000);
  }

  const nearBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const toBottom = () => { list.scrollTop = list.scrollHeight; };

  function bubble(direction, text) {
    const el = document.createElement('div');
    el.className = `chw-msg ${direction === 'inbound' ? 'chw-inbound' : 'chw-outbound'}`;
    el.textContent = text;
    return el;
  }

  // Files the agent attached: links the visitor opens in a new tab (the hub signs them, so no
  // sign-in is needed). Relative links are the hub's own, not the page's; only http(s) is followed.
  function addFiles(el, files) {
    for (const f of Array.isArray(files) ? files : []) {
      if (!f || typeof f.url !== 'string') continue;
      let href;
      try { href = new URL(f.url, ORIGIN); } catch { continue; }
      if (href.protocol !== 'https:' && href.protocol !== 'http:') continue;
      const a = document.createElement('a');
      a.className = 'chw-file';
      a.href = href.href;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.textContent = typeof f.name === 'string' && f.name ? f.name : 'attachment';
      el.appendChild(a);
    }
  }

  // Confirmed messages are kept in id order, above any pending (id-less) ones.
  function place(el, id) {
    let before = null;
    for (const child of list.children) {
      if (!child.dataset.id || Number(child.dataset.id) > id) { before = child; break; }
    }
    list.insertBefore(el, before);
  }

  function addMessage(m, { live = true } = {}) {
    if (!m || !Number.isInteger(m.id) || shown.has(m.id)) return; // de-duplicate by id
    messages.set(m.id, m);
    const el = bubble(m.direction, m.text || '');
    addFiles(el, m.attachments);
    el.dataset.id = String(m.id);
    if (m.direction !== 'inbound' && m.author && m.author.name) el.dataset.author = m.author.name;
    if (m.created_at) el.title = new Date(m.created_at).toLocaleString();
    const stick = nearBottom();
    place(el, m.id);
    shown.set(m.id, el);
    if (stick) toBottom();
    if (live && m.direction !== 'inbound' && panel.hidden) {
      unread += 1;
      badge.textContent = String(unread);
      badge.hidden = false;
    }
  }

  // Messages from the server's ordered stream: render, advance `since`, persist.
  function receive(list_, advance) {
    for (const m of list_ || []) {
      addMessage(m);
      if (advance && m && Number.isInteger(m.id) && m.id > since) since = m.id;
    }
    saveCache();
  }

  function saveCache() {
    if (!visitorId) return;
    const kept = [...messages.values()].sort((a, b) => a.id - b.id).slice(-CACHE_LIMIT);
    store.set(K_CACHE, JSON.stringify({ visitor_id: visitorId, messages: kept }));
    store.set(K_SINCE, String(since));
  }

  // Redraw the conversation after a reload. `since` is only trusted together with the
  // cached transcript; min() covers two tabs having written the two keys at different times.
  function loadCache() {
    try {
      const cached = JSON.parse(store.get(K_CACHE) || 'null');
      if (!visitorId || !cached || cached.visitor_id !== visitorId) return;
      for (const m of cached.messages) addMessage(m, { live: false });
      const maxId = Math.max(0, ...messages.keys());
      since = Math.min(parseInt(store.get(K_SINCE), 10) || 0, maxId);
    } catch { /* corrupt cache: start from full history */ }
  }

  function resetTranscript() {
    for (const el of shown.values()) el.remove();
    shown.clear();
    messages.clear();
    since = 0;
  }

  function setVisitor(id) {
    if (!id || id === visitorId) return;
    visitorId = id;
    store.set(K_VISITOR, id);
  }

  // ---- sending
  function send(text) {
    text = String(text == null ? '' : text).trim();
    if (!text) return null;
    const clientId = uuid();
    const el = bubble('inbound', text);
    el.classList.add('chw-pending');
    el.dataset.clientId = clientId;
    list.appendChild(el);
    toBottom();
    const p = { text, el, sent: false };
    pending.set(clientId, p);
    if (ready) {
      transmit(clientId, p);
    } else {
      armFallback();
      if (!ws) connect(); // typing is a good reason to skip the rest of the backoff
    }
    return clientId;
  }

  function transmit(clientId, p) {
    frame({ type: 'message', client_id: clientId, text: p.text });
    p.sent = true; // may have reached the server even if no ack ever comes back
  }

  // The server's copy of a pending message arrived (ack or HTTP answer): swap it in.
  function confirm(clientId, m) {
    const p = pending.get(clientId);
    pending.delete(clientId);
    if (p) p.el.remove();
    addMessage(m, { live: false });
    saveCache();
  }

  function retryLater(clientId) {
    setTimeout(() => {
      const p = pending.get(clientId);
      if (p && ready) transmit(clientId, p); // else the next welcome resends it
    }, BUSY_RETRY / 2 + Math.random() * BUSY_RETRY);
  }

  function fail(clientId, reason) {
    const p = pending.get(clientId);
    if (!p) return;
    pending.delete(clientId);
    p.el.classList.remove('chw-pending');
    p.el.classList.add('chw-failed');
    p.el.title = `Not sent: ${reason}`;
    flashError(reason);
  }

  // ---- websocket
  const isOpen = () => ws && ws.readyState === WebSocket.OPEN;
  const frame = (obj) => { if (isOpen()) ws.send(JSON.stringify(obj)); };

  function connect() {
    clearTimeout(retryTimer);
    if (ws) return;
    let sock;
    try {
      sock = new WebSocket(WS_URL);
    } catch {
      scheduleReconnect();
      return;
    }
    ws = sock;
    // A connect that hangs (e.g. packets silently dropped) would never fire "close".
    connectTimer = setTimeout(() => lost(sock), CONNECT_TIMEOUT);
    sock.onopen = () => {
      clearTimeout(connectTimer);
      lastRx = Date.now();
      // Wait for HTTP posts in flight: the first may be creating our visitor id.
      httpChain.then(() => {
        if (ws !== sock) return;
        const hello = { type: 'hello', visitor_id: visitorId, since, page: location.href,
                        language: navigator.language || undefined };
        if (script && script.dataset.name) hello.name = script.dataset.name;
        if (script && script.dataset.email) hello.email = script.dataset.email;
        frame(hello);
      });
    };
    sock.onmessage = (ev) => { if (ws === sock) onFrame(ev.data); };
    sock.onclose = () => lost(sock);
  }

  // The socket is gone (closed, timed out or stale). Idempotent per socket.
  function lost(sock) {
    if (ws !== sock) return;
    ws = null;
    ready = false;
    clearTimeout(connectTimer);
    clearInterval(pingTimer);
    sock.close(); // no-op if already closing
    if (!downSince) downSince = Date.now();
    setStatus('offline — retrying');
    armFallback();
    scheduleReconnect();
  }

  function scheduleReconnect() {
    clearTimeout(retryTimer);
    const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt);
    attempt += 1;
    retryTimer = setTimeout(connect, base / 2 + Math.random() * base / 2); // jitter
    if (Date.now() - downSince >= FALLBACK_AFTER) fallback();
  }

  function onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    lastRx = Date.now();
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'message':
        if (f.message && f.message.direction === 'outbound') agentTyping({ state: 'paused' });
        receive([f.message], true);
        break;
      case 'ack': confirm(f.client_id, f.message); break;
      case 'typing': agentTyping(f); break;
      case 'error':
        // busy: the server was overloaded and stored nothing; the same client_id is sent again.
        if (f.code === 'busy' && f.client_id && pending.has(f.client_id)) retryLater(f.client_id);
        else if (f.client_id && pending.has(f.client_id)) fail(f.client_id, f.message || f.code);
        else flashError(f.message || f.code || 'Something went wrong');
        break;
      default: break; // pong, or a frame type this version does not know
    }
  }

  function onWelcome(f) {
    ready = true;
    attempt = 0;
    downSince = 0;
    clearTimeout(fallbackTimer);
    fallbackTimer = 0;
    if (f.visitor_id && f.visitor_id !== visitorId) {
      if (visitorId) resetTranscript(); // the server did not know us: a new conversation
      setVisitor(f.visitor_id);
    }
    const list_ = Array.isArray(f.messages) ? f.messages : [];
    // A message sent just before the socket died may have been stored without its ack
    // reaching us; it then shows up here. Match it to the pending copy instead of resending.
    for (const m of list_) {
      if (!m || m.direction !== 'inbound' || shown.has(m.id)) continue;
      for (const [cid, p] of pending) {
        if (p.sent && p.text === m.text) { confirm(cid, m); break; }
      }
    }
    receive(list_, true);
    // A full page: more may wait after it (a socket cut off as too slow); page on from `since`.
    if (list_.length >= HISTORY_PAGE) httpChain = httpChain.then(catchUp).catch(() => {});
    setStatus('online', 'online');
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_EVERY);
    for (const [cid, p] of pending) transmit(cid, p); // same client_id as any earlier try
  }

  function ping() {
    if (Date.now() - lastRx > STALE_AFTER) lost(ws); // half-open connection: start over
    else frame({ type: 'ping' });
  }

  // ---- HTTP fallback
  function armFallback() {
    if (fallbackTimer || !pending.size || !downSince) return;
    fallbackTimer = setTimeout(() => {
      fallbackTimer = 0;
      if (!isOpen()) fallback();
    }, Math.max(0, downSince + FALLBACK_AFTER - Date.now()));
  }

  // Called while the socket is down: post queued messages, then poll for replies.
  function fallback() {
    httpChain = httpChain.then(postQueued).then(pollHistory).catch(() => {});
  }

  async function postQueued() {
    for (const [cid, p] of pending) {
      if (isOpen()) return; // the socket is back; it resends whatever is left
      let res, body;
      try {
        res = await fetch(`${ORIGIN}/webchat/messages`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ visitor_id: visitorId, client_id: cid, text: p.text }),
          signal: AbortSignal.timeout(10000),
        });
        body = await res.json().catch(() => ({}));
      } catch {
        return; // still offline: retried on the next reconnect attempt
      }
      if (res.ok) {
        setVisitor(body.visitor_id);
        confirm(cid, body.message);
      } else if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        fail(cid, (body.error && body.error.message) || `error ${res.status}`);
      } else {
        return; // server trouble: try again later
      }
    }
  }

  async function catchUp() {
    for (;;) {
      const url = `${ORIGIN}/webchat/history?visitor_id=${encodeURIComponent(visitorId)}&since=${since}`;
      const res = await fetch(url, { signal: AbortSignal.timeout(10000) });
      if (!res.ok) return;
      const page = (await res.json()).messages || [];
      receive(page, true);
      if (page.length < HISTORY_PAGE) return;
    }
  }

  async function pollHistory() {
    if (!visitorId || isOpen()) return;
    const url = `${ORIGIN}/webchat/history?visitor_id=${encodeURIComponent(visitorId)}&since=${since}`;
    const res = await fetch(url, { signal: AbortSignal.timeout(10000) });
    if (res.ok) receive((await res.json()).messages, true);
  }

  // ---- panel
  function open() {
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    unread = 0;
    badge.hidden = true;
    toBottom();
    input.focus();
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
  }

  function submit() {
    if (send(input.value)) input.value = '';
    typing('paused');
    input.focus();
  }

  // ---- typing, both ways (never stored): "composing" at most every few seconds while the
  // customer types, "paused" once they stop or send; the agent's shows under the messages.
  let typingState = 'paused', typingAt = 0, typingIdle = 0, agentTypingTimer = 0;
  function typing(state) {
    clearTimeout(typingIdle);
    if (state === 'composing') typingIdle = setTimeout(() => typing('paused'), 5000);
    const now = Date.now();
    if (state === typingState && (state === 'paused' || now - typingAt < 3000)) return;
    typingState = state;
    typingAt = now;
    if (ready) frame({ type: 'typing', state });
  }
  function agentTyping(f) {
    clearTimeout(agentTypingTimer);
    const on = f.state === 'composing';
    const name = f.by && typeof f.by.name === 'string' ? f.by.name : '';
    typingEl.textContent = on ? (name ? `${name} is typing…` : 'Typing…') : '';
    typingEl.hidden = !on;
    // A lost "paused" must not leave it showing.
    if (on) agentTypingTimer = setTimeout(() => { typingEl.hidden = true; }, 8000);
  }

  launcher.addEventListener('click', () => (panel.hidden ? open() : close()));
  q('.chw-close').addEventListener('click', close);
  q('.chw-compose').addEventListener('submit', (e) => { e.preventDefault(); submit(); });
  input.addEventListener('input', () => typing(input.value.trim() ? 'composing' : 'paused'));
  input.addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter is a newline; leave Enter alone while an IME is composing.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') { close(); launcher.focus(); } });
  window.addEventListener('hashchange', () => { if (location.hash === '#chat') open(); });

  // Back online or back in view: don't wait for the rest of the backoff.
  const retryNow = () => { if (!ws) { attempt = 0; connect(); } };
  window.addEventListener('online', retryNow);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) retryNow(); });

  window.ChannelHubWidget = { open, close, send };

  loadCache();
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
  connect();
})();
