/*
 * channelhub agent console. Plain JavaScript, no build step.
 *
 * HTTP (same origin): POST /api/v1/auth/login, POST /api/v1/auth/logout,
 *                     GET /api/v1/tickets/{id}  (Authorization: Bearer <token>).
 * Live: the agent websocket /agent/ws — ticket list, events, presence and all actions.
 * All server-provided text is written with textContent, never as HTML.
 */
(() => {
  'use strict';

  const TOKEN_KEY = 'channelhub.console.token';
  const PRESENCE_KEY = 'channelhub.console.presence';
  const UNREAD_KEY = 'channelhub.console.unread';
  const PING_EVERY = 20000;
  const STALE_AFTER = 50000;     // no frame for this long: treat the socket as dead
  const ACTION_TIMEOUT = 15000;
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;
  const SEEN_EVENTS_MAX = 5000;

  const $ = (sel) => document.querySelector(sel);
  const ui = {
    loginView: $('#login-view'), loginForm: $('#login-form'), email: $('#login-email'),
    password: $('#login-password'), loginSubmit: $('#login-submit'), loginError: $('#login-error'),
    app: $('#app'), conn: $('#conn'), agentName: $('#agent-name'), presence: $('#presence'),
    logout: $('#logout'), tickets: $('#tickets'), empty: $('#ticket-empty'), detail: $('#ticket-detail'),
    subject: $('#ticket-subject'), info: $('#ticket-info'), status: $('#ticket-status'),
    thread: $('#thread'), replyText: $('#reply-text'), sendReply: $('#send-reply'), attachFile: $('#attach-file'),
    sendNote: $('#send-note'), viewError: $('#view-error'), transferBox: $('#transfer-box'),
    transferKind: $('#transfer-kind'), transferId: $('#transfer-id'), transfer: $('#transfer'),
  };

  const session = {
    get: (k) => { try { return sessionStorage.getItem(k); } catch { return null; } },
    set: (k, v) => { try { sessionStorage.setItem(k, v); } catch { /* memory only */ } },
    del: (k) => { try { sessionStorage.removeItem(k); } catch { /* ignore */ } },
  };

  function loadUnread() {
    try { return new Set(JSON.parse(session.get(UNREAD_KEY) || '[]')); } catch { return new Set(); }
  }

  const state = {
    token: session.get(TOKEN_KEY),
    agent: null,
    tickets: new Map(),     // id -> ticket (the visible, not closed ones)
    unread: loadUnread(),   // ticket ids
    selectedId: null,
    viewTicket: null,       // the selected ticket, even once closed and out of the list
    thread: null,           // { ticketId, messages: Map id -> message }
    lastEventId: null,
    seenEvents: new Set(),
  };

  // ---- small helpers -----------------------------------------------------------------
  function h(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  const time = (iso) => {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return '';
    return d.toDateString() === new Date().toDateString()
      ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleDateString([], { month: 'short', day: 'numeric' });
  };
  const stamp = (t) => Date.parse(t && (t.updated_at || t.created_at)) || 0;
  const activity = (t) => Date.parse(t.last_message_at || t.updated_at || t.created_at) || 0;
  const ticketTitle = (t) => t.subject || (t.customer && (t.customer.name || t.customer.email)) || `Ticket #${t.id}`;

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const err = new Error((data.error && data.error.message) || `Request failed (${res.status})`);
      err.status = res.status;
      err.code = data.error && data.error.code;
      throw err;
    }
    return data;
  }

  // ---- sign-in / sign-out -------------------------------------------------------------
  function showLogin(message) {
    ui.app.hidden = true;
    ui.loginView.hidden = false;
    ui.loginError.textContent = message || '';
    ui.password.value = '';
    (ui.email.value ? ui.password : ui.email).focus();
    document.title = 'channelhub — agent console';
  }

  function showApp() {
    ui.loginView.hidden = true;
    ui.app.hidden = false;
    renderAgent();
    renderTickets();
    renderView();
  }

  ui.loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const email = ui.email.value.trim();
    const password = ui.password.value;
    if (!email || !password) {
      ui.loginError.textContent = 'Enter your email and password.';
      return;
    }
    ui.loginSubmit.disabled = true;
    ui.loginError.textContent = '';
    try {
      const data = await api('POST', '/api/v1/auth/login', { email, password });
      state.token = data.token;
      state.agent = data.agent || null;
      session.set(TOKEN_KEY, data.token);
      showApp();
      connect();
    } catch (err) {
      ui.loginError.textContent = err.status ? err.message : 'Cannot reach the server.';
    } finally {
      ui.loginSubmit.disabled = false;
    }
  });

  ui.logout.addEventListener('click', async () => {
    ui.logout.disabled = true;
    try { await api('POST', '/api/v1/auth/logout'); } catch { /* signing out locally anyway */ }
    ui.logout.disabled = false;
    signOut();
  });

  // Forget everything tied to this session and go back to the form.
  function signOut(message) {
    disconnect();
    session.del(TOKEN_KEY);
    session.del(UNREAD_KEY);
    session.del(PRESENCE_KEY);
    Object.assign(state, {
      token: null, agent: null, tickets: new Map(), unread: new Set(), selectedId: null,
      viewTicket: null, thread: null, lastEventId: null, seenEvents: new Set(),
    });
    ui.tickets.replaceChildren();
    ui.thread.replaceChildren();
    showLogin(message);
  }

  // ---- agent websocket ----------------------------------------------------------------
  let ws = null;
  let ready = false;        // between "welcome" and close
  let welcomed = false;     // at least one welcome on this page: later ones are reconnects
  let attempt = 0;
  let retryTimer = 0, pingTimer = 0;
  let lastRx = 0;
  let refSeq = 0;
  const inflight = new Map(); // ref -> { resolve, reject, timer }

  function setConn(connected) {
    const text = connected ? 'connected' : 'reconnecting';
    ui.conn.textContent = text;
    ui.conn.dataset.state = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (ws || !state.token) return;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/agent/ws`;
    const sock = new WebSocket(url);
    ws = sock;
    sock.onopen = () => {
      lastRx = Date.now();
      sock.send(JSON.stringify({ type: 'hello', token: state.token, since: state.lastEventId }));
    };
    sock.onmessage = (ev) => { if (ws === sock) onFrame(ev.data); };
    sock.onclose = () => lost(sock, true);
  }

  // Idempotent per socket. `retry` is false when we are shutting down on purpose.
  function lost(sock, retry) {
    if (ws !== sock) return;
    ws = null;
    ready = false;
    clearInterval(pingTimer);
    sock.close(); // no-op if already closing
    setConn(false);
    // We cannot know whether an action in flight was applied; the agent sees the outcome
    // in the thread after reconnecting, so fail them rather than resend (no duplicates).
    for (const [ref, p] of inflight) {
      clearTimeout(p.timer);
      p.reject(new Error('Connection lost — check the ticket and try again.'));
      inflight.delete(ref);
    }
    if (retry && state.token) {
      const base = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** attempt);
      attempt += 1;
      retryTimer = setTimeout(connect, base / 2 + Math.random() * base / 2); // with jitter
    }
  }

  function disconnect() {
    clearTimeout(retryTimer);
    if (ws) lost(ws, false);
    welcomed = false;
  }

  function sendFrame(obj) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  function ping() {
    if (Date.now() - lastRx > STALE_AFTER) lost(ws, true); // half-open connection
    else sendFrame({ type: 'ping' });
  }

  // Send an action; resolves with result.data, rejects with an Error (code in err.code).
  function action(frame) {
    return new Promise((resolve, reject) => {
      if (!ready) {
        reject(new Error('Not connected — try again in a moment.'));
        return;
      }
      const ref = `r${Date.now().toString(36)}-${++refSeq}`;
      const timer = setTimeout(() => {
        inflight.delete(ref);
        reject(new Error('No answer from the server.'));
      }, ACTION_TIMEOUT);
      inflight.set(ref, { resolve, reject, timer });
      sendFrame({ ...frame, ref });
    });
  }

  function onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch { return; }
    lastRx = Date.now();
    switch (f.type) {
      case 'welcome': onWelcome(f); break;
      case 'event': applyEvent(f.event, false); scheduleRender(); break;
      case 'result': {
        const p = inflight.get(f.ref);
        if (!p) break;
        inflight.delete(f.ref);
        clearTimeout(p.timer);
        if (f.ok) {
          p.resolve(f.data || {});
        } else {
          const err = new Error((f.error && f.error.message) || 'The action failed.');
          err.code = f.error && f.error.code;
          p.reject(err);
        }
        break;
      }
      case 'error':
        if (f.code === 'unauthorized') signOut('Your session has expired. Please sign in again.');
        else ui.viewError.textContent = f.message || f.code || 'Server error';
        break;
      default: break; // pong, or something newer than this console
    }
  }

  function onWelcome(f) {
    const reconnect = welcomed;
    welcomed = true;
    ready = true;
    attempt = 0;
    setConn(true);
    clearInterval(pingTimer);
    pingTimer = setInterval(ping, PING_EVERY);
    state.agent = f.agent || state.agent;

    // The ticket list in a welcome is a full snapshot: it replaces ours.
    state.tickets = new Map();
    for (const t of f.tickets || []) if (t && t.status !== 'closed') state.tickets.set(t.id, t);
    if (state.selectedId != null && state.tickets.has(state.selectedId)) {
      state.viewTicket = state.tickets.get(state.selectedId);
    }
    // Missed events only add messages and unread marks: their ticket copies are older than
    // the snapshot above and must not overwrite it.
    for (const ev of f.events || []) applyEvent(ev, true);
    if (Number.isInteger(f.last_event_id) && (state.lastEventId == null || f.last_event_id > state.lastEventId)) {
      state.lastEventId = f.last_event_id;
    }

    // Presence: keep what the agent chose on this tab across reconnects and reloads.
    const wanted = session.get(PRESENCE_KEY);
    const current = state.agent && state.agent.status;
    ui.presence.value = wanted || (current === 'away' ? 'away' : 'online');
    if (ui.presence.value !== current) sendFrame({ type: 'presence', status: ui.presence.value });

    renderAgent();
    scheduleRender();
    if (reconnect && state.selectedId != null) loadThread(state.selectedId); // fill any gap
  }

  // ---- events -------------------------------------------------------------------------
  function applyEvent(ev, backlog) {
    if (!ev || !Number.isInteger(ev.id) || state.seenEvents.has(ev.id)) return; // de-duplicate
    state.seenEvents.add(ev.id);
    if (state.seenEvents.size > SEEN_EVENTS_MAX) { // drop the oldest half
      let n = SEEN_EVENTS_MAX / 2;
      for (const id of state.seenEvents) { if (n-- <= 0) break; state.seenEvents.delete(id); }
    }
    if (state.lastEventId == null || ev.id > state.lastEventId) state.lastEventId = ev.id;

    if (ev.ticket && !backlog) upsertTicket(ev.ticket);
    const isSelected = ev.ticket_id === state.selectedId;
    if (ev.kind === 'message.created' && ev.message) {
      if (isSelected) addThreadMessage(ev.message);
      else if (ev.message.direction === 'inbound') markUnread(ev.ticket_id);
    } else if (ev.kind === 'ticket.created' && !isSelected) {
      markUnread(ev.ticket_id);
    } else if (ev.kind === 'ticket.assigned' && !isSelected && state.agent
               && ev.ticket && ev.ticket.assignee_id === state.agent.id) {
      markUnread(ev.ticket_id);
    }
  }

  // Events and HTTP answers can arrive out of order: never let an older copy win.
  function upsertTicket(t) {
    if (!t || t.id == null) return;
    const known = state.tickets.get(t.id)
      || (state.viewTicket && state.viewTicket.id === t.id ? state.viewTicket : null);
    if (known && stamp(known) > stamp(t)) return;
    if (t.status === 'closed') {
      state.tickets.delete(t.id);
      state.unread.delete(t.id);
      saveUnread();
    } else {
      state.tickets.set(t.id, t);
    }
    if (t.id === state.selectedId) state.viewTicket = t;
    scheduleRender();
  }

  function markUnread(id) {
    if (!state.tickets.has(id)) return;
    state.unread.add(id);
    saveUnread();
    scheduleRender();
  }

  function saveUnread() {
    session.set(UNREAD_KEY, JSON.stringify([...state.unread]));
  }

  // ---- rendering ----------------------------------------------------------------------
  // Batches the many updates a burst of events causes. setTimeout rather than
  // requestAnimationFrame, which does not run in a background tab (the title shows unread).
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(() => {
      renderQueued = false;
      renderTickets();
      renderHead();
    }, 0);
  }

  function renderAgent() {
    const a = state.agent;
    ui.agentName.textContent = a ? (a.name || a.email || '') : '';
  }

  function renderTickets() {
    const items = [...state.tickets.values()].sort((a, b) => activity(b) - activity(a));
    // The list is rebuilt on every change: keep keyboard focus on the same ticket.
    const focused = ui.tickets.contains(document.activeElement) ? document.activeElement.dataset.id : null;
    if (!items.length) {
      ui.tickets.replaceChildren(h('li', 'empty', 'No open tickets.'));
    } else {
      ui.tickets.replaceChildren(...items.map(ticketItem));
    }
    if (focused) {
      const li = ui.tickets.querySelector(`li.ticket[data-id="${CSS.escape(focused)}"]`);
      if (li) li.focus();
    }
    const n = state.unread.size;
    document.title = `${n ? `(${n}) ` : ''}channelhub — agent console`;
  }

  function ticketItem(t) {
    const li = h('li', 'ticket');
    li.dataset.id = String(t.id);
    li.tabIndex = 0;
    li.setAttribute('role', 'option');
    const selected = t.id === state.selectedId;
    li.classList.toggle('selected', selected);
    li.setAttribute('aria-selected', String(selected));
    if (state.unread.has(t.id)) {
      li.classList.add('unread');
      const dot = h('span', 'unread-dot');
      dot.title = 'unread';
      li.append(dot);
    }
    li.append(h('div', 'ticket-title', ticketTitle(t)));
    const meta = h('div', 'ticket-meta');
    meta.append(h('span', `badge status-${t.status}`, t.status), h('span', 'channel', t.channel || ''));
    if (t.subject && t.customer && t.customer.name) meta.append(h('span', 'customer', `· ${t.customer.name}`));
    meta.append(h('span', 'time', time(t.last_message_at || t.updated_at)));
    li.append(meta);
    return li;
  }

  function renderView() {
    const has = state.selectedId != null;
    ui.empty.hidden = has;
    ui.detail.hidden = !has;
    if (has) renderHead();
  }

  function renderHead() {
    const t = state.viewTicket;
    if (!t) return;
    ui.subject.textContent = ticketTitle(t);
    const c = t.customer || {};
    const who = [c.name, c.email && `<${c.email}>`].filter(Boolean).join(' ');
    const assignee = t.assignee_id == null ? 'unassigned'
      : (state.agent && t.assignee_id === state.agent.id ? 'assigned to you' : `assigned to agent #${t.assignee_id}`);
    const parts = [`#${t.id}`, who, t.channel, t.priority && `priority ${t.priority}`, assignee];
    if (t.tags && t.tags.length) parts.push(`tags: ${t.tags.join(', ')}`);
    ui.info.textContent = parts.filter(Boolean).join(' · ');
    if (document.activeElement !== ui.status) ui.status.value = t.status;
  }

  const fileSize = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`);

  // Our files (uploads, a customer's WeChat media) need the agent's token, which a plain link
  // cannot carry: they are fetched with it and handed to the browser as a blob.
  async function fileBlobUrl(url) {
    const res = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
    if (!res.ok) throw new Error(`The file cannot be opened (${res.status})`);
    return URL.createObjectURL(await res.blob());
  }

  function attachmentEl(a) {
    const url = typeof a.url === 'string' ? a.url : '';
    const name = a.name || 'file';
    const link = h('a', 'att', a.size ? `${name} (${fileSize(a.size)})` : name);
    const box = h('div', 'att-box');
    box.append(link);
    if (url.startsWith('/api/')) {
      link.href = '#';
      link.addEventListener('click', async (e) => {
        e.preventDefault();
        try {
          const save = h('a');
          save.href = await fileBlobUrl(url);
          save.download = name;
          document.body.append(save);
          save.click();
          save.remove();
          setTimeout(() => URL.revokeObjectURL(save.href), 60000);
        } catch (err) {
          ui.viewError.textContent = err.message;
        }
      });
      if (/^image\//.test(a.content_type || '')) {
        const img = h('img', 'att-img');
        img.alt = name;
        fileBlobUrl(url).then((u) => { img.src = u; }).catch(() => img.remove());
        box.append(img);
      }
    } else if (/^https?:\/\//i.test(url)) { // anything else (javascript:, data:) stays a plain label
      link.href = url;
      link.target = '_blank';
      link.rel = 'noopener noreferrer';
    }
    return box;
  }

  function messageEl(m) {
    const dir = ['inbound', 'outbound', 'note'].includes(m.direction) ? m.direction : 'inbound';
    const el = h('div', `msg msg-${dir}`, m.text || '');
    el.dataset.id = String(m.id);
    const author = (m.author && m.author.name)
      || (dir === 'inbound' ? (state.viewTicket && state.viewTicket.customer && state.viewTicket.customer.name) || 'Customer' : 'Agent');
    // Shown by CSS (::before), so the element's text starts with exactly the message text.
    el.dataset.meta = [author, dir === 'note' ? 'internal note' : '', time(m.created_at)].filter(Boolean).join(' · ');
    if (m.created_at) el.title = new Date(m.created_at).toLocaleString();
    for (const a of Array.isArray(m.attachments) ? m.attachments : []) if (a && typeof a === 'object') el.append(attachmentEl(a));
    return el;
  }

  const threadAtBottom = () => ui.thread.scrollHeight - ui.thread.scrollTop - ui.thread.clientHeight < 60;

  function renderThread() {
    const msgs = [...state.thread.messages.values()].sort((a, b) => a.id - b.id);
    ui.thread.replaceChildren(...msgs.map(messageEl));
    ui.thread.scrollTop = ui.thread.scrollHeight;
  }

  function addThreadMessage(m) {
    const th = state.thread;
    if (!th || !m || m.id == null || th.messages.has(m.id)) return; // de-duplicate by id
    th.messages.set(m.id, m);
    const stick = threadAtBottom();
    const el = messageEl(m);
    // Keep id order (an event can overtake an action result).
    const after = [...ui.thread.children].find((c) => Number(c.dataset.id) > m.id);
    ui.thread.insertBefore(el, after || null);
    if (stick) ui.thread.scrollTop = ui.thread.scrollHeight;
  }

  // ---- selecting a ticket -------------------------------------------------------------
  function selectTicket(id) {
    if (id === state.selectedId) return;
    state.selectedId = id;
    state.viewTicket = state.tickets.get(id) || null;
    state.thread = { ticketId: id, messages: new Map() };
    state.unread.delete(id);
    saveUnread();
    ui.viewError.textContent = '';
    ui.thread.replaceChildren(h('p', 'empty', 'Loading…'));
    renderView();
    renderTickets();
    loadThread(id);
  }

  async function loadThread(id) {
    try {
      const data = await api('GET', `/api/v1/tickets/${encodeURIComponent(id)}`);
      const th = state.thread;
      if (!th || th.ticketId !== id) return; // the agent moved on meanwhile
      if (data.ticket) {
        upsertTicket(data.ticket);
        if (!state.viewTicket || stamp(data.ticket) >= stamp(state.viewTicket)) state.viewTicket = data.ticket;
      }
      // Merge: events may have added messages while the request was in flight.
      for (const m of data.messages || []) if (m && m.id != null) th.messages.set(m.id, m);
      renderThread();
      renderView();
    } catch (err) {
      if (err.status === 401) { signOut('Your session has expired. Please sign in again.'); return; }
      if (state.selectedId === id) {
        ui.thread.replaceChildren();
        ui.viewError.textContent = err.status ? err.message : 'Cannot reach the server.';
      }
    }
  }

  function onTicketActivate(e) {
    if (e.type === 'keydown' && e.key !== 'Enter' && e.key !== ' ') return;
    const li = e.target.closest('li.ticket');
    if (!li) return;
    e.preventDefault();
    selectTicket(Number(li.dataset.id));
  }
  ui.tickets.addEventListener('click', onTicketActivate);
  ui.tickets.addEventListener('keydown', onTicketActivate);

  // ---- actions on the selected ticket -------------------------------------------------
  function setBusy(busy) {
    ui.sendReply.disabled = busy;
    ui.sendNote.disabled = busy;
  }

  async function upload(file) {
    const res = await fetch(`/api/v1/attachments?name=${encodeURIComponent(file.name)}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${state.token}`, 'Content-Type': file.type || 'application/octet-stream' },
      body: file,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`${file.name}: ${(data.error && data.error.message) || `upload failed (${res.status})`}`);
    return data.attachment.id;
  }

  // A message's client id, kept while it is unconfirmed: sending the same message again (after
  // "No answer from the server", or a socket that dropped) reuses it, so the hub stores it once.
  let unconfirmed = null; // { key, clientId }
  const newClientId = () => `c${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;

  async function submitText(type) {
    const text = ui.replyText.value.trim();
    const files = [...ui.attachFile.files];
    const id = state.selectedId;
    if ((!text && !files.length) || id == null) return;
    setBusy(true);
    ui.viewError.textContent = '';
    const key = JSON.stringify([type, id, text, files.map((f) => [f.name, f.size])]);
    if (!unconfirmed || unconfirmed.key !== key) unconfirmed = { key, clientId: newClientId() };
    try {
      const frame = { type, ticket_id: id, text, client_id: unconfirmed.clientId };
      if (files.length) frame.attachments = await Promise.all(files.map(upload));
      const data = await action(frame);
      if (unconfirmed && unconfirmed.key === key) unconfirmed = null;
      if (ui.replyText.value.trim() === text) ui.replyText.value = '';
      ui.attachFile.value = '';
      if (data.message && state.selectedId === id) addThreadMessage(data.message);
      if (data.ticket) upsertTicket(data.ticket);
    } catch (err) {
      ui.viewError.textContent = err.message; // the text and files stay for another try
    } finally {
      setBusy(false);
    }
  }

  ui.sendReply.addEventListener('click', () => submitText('reply'));
  ui.sendNote.addEventListener('click', () => submitText('note'));
  ui.replyText.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submitText('reply'); }
  });

  ui.status.addEventListener('change', async () => {
    const id = state.selectedId;
    const status = ui.status.value;
    ui.viewError.textContent = '';
    try {
      const data = await action({ type: 'status', ticket_id: id, status });
      if (data.ticket) upsertTicket(data.ticket);
    } catch (err) {
      ui.viewError.textContent = err.message;
      if (state.viewTicket && state.selectedId === id) ui.status.value = state.viewTicket.status;
    }
  });

  ui.transfer.addEventListener('click', async () => {
    const id = state.selectedId;
    const target = Number(ui.transferId.value);
    if (id == null || !Number.isInteger(target) || target <= 0) {
      ui.viewError.textContent = 'Enter the id to transfer to.';
      return;
    }
    ui.viewError.textContent = '';
    ui.transfer.disabled = true;
    try {
      const data = await action({ type: 'transfer', ticket_id: id, [ui.transferKind.value]: target });
      if (data.ticket) upsertTicket(data.ticket);
      ui.transferId.value = '';
      ui.transferBox.open = false;
    } catch (err) {
      ui.viewError.textContent = err.message;
    } finally {
      ui.transfer.disabled = false;
    }
  });

  ui.presence.addEventListener('change', () => {
    session.set(PRESENCE_KEY, ui.presence.value);
    sendFrame({ type: 'presence', status: ui.presence.value }); // else sent after reconnect
  });

  // Back online: skip the rest of the backoff.
  window.addEventListener('online', () => { if (!ws && state.token) { attempt = 0; connect(); } });

  // ---- start ----------------------------------------------------------------------------
  if (state.token) {
    showApp();
    connect(); // a bad or expired token comes back as "unauthorized" and shows the form
  } else {
    showLogin();
  }
})();
