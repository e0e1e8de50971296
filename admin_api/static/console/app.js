// channelhub agent console: Preact + htm (vendored under /vendor, no build step), every word from
// the message catalogues (i18n.js), all server text rendered as text (Preact escapes it).
//
// HTTP (same origin, bearer token): sign-in and sign-out, a ticket's thread, agents and groups (for
// names and the transfer picker), the queue, file uploads and downloads. Live: the agent websocket
// (live.js): the ticket snapshot, events, presence and every action on a ticket.

import { h, render } from '/vendor/preact.mjs';
import { useEffect, useRef, useState } from '/vendor/hooks.mjs';
import htm from '/vendor/htm.mjs';
import { LANGS, channelName, lang, loadLang, preferredLang, t } from './i18n.js';
import { Live } from './live.js';
import { AdminPage } from './admin.js';
import { ReportsPage } from './reports.js';

const html = htm.bind(h);

const TOKEN_KEY = 'channelhub.console.token';
const PRESENCE_KEY = 'channelhub.console.presence';
const UNREAD_KEY = 'channelhub.console.unread';
const PREFS_KEY = 'channelhub.console.prefs';
const SEEN_EVENTS_MAX = 5000;
const VIEWS = ['mine', 'unassigned', 'all', 'pending', 'solved'];
const STATUSES = ['new', 'open', 'pending', 'solved', 'closed'];
const PRIORITIES = ['low', 'normal', 'high', 'urgent'];
const ACTIVE = new Set(['new', 'open', 'pending']);

const store = {
  get: (k) => { try { return sessionStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { sessionStorage.setItem(k, v); } catch { /* memory only */ } },
  del: (k) => { try { sessionStorage.removeItem(k); } catch { /* ignore */ } },
};
const prefs = (() => { try { return JSON.parse(localStorage.getItem(PREFS_KEY) || '{}'); } catch { return {}; } })();
const savePrefs = () => { try { localStorage.setItem(PREFS_KEY, JSON.stringify(prefs)); } catch { /* ignore */ } };

// ---- state: one object, changed in place, and a redraw after each burst of changes -------------
const state = {
  token: store.get(TOKEN_KEY),
  agent: null,
  connected: false,
  tickets: new Map(),      // id -> ticket (the snapshot and what events brought)
  queue: [],               // waiting tickets (GET /api/v1/queue)
  unread: new Set((() => { try { return JSON.parse(store.get(UNREAD_KEY) || '[]'); } catch { return []; } })()),
  selectedId: null,
  viewTicket: null,
  thread: null,            // { ticketId, messages: Map }
  agents: new Map(),       // id -> agent (names, presence, load)
  groups: new Map(),       // id -> group
  view: prefs.view && VIEWS.includes(prefs.view) ? prefs.view : 'mine',
  filters: { channel: '', group: '', priority: '', tag: '', assignee: '' },
  error: '',
  loginError: '',
  overlay: null,           // 'shortcuts' | 'transfer' | null
  seenEvents: new Set(),
  // Who is typing on or viewing which ticket, right now: ticket id -> key -> {kind, by, until}.
  live: new Map(),
  // Notes that mention this agent (GET /api/v1/me/mentions), and how many are unread.
  mentions: { list: [], unread: 0 },
  macros: [],
  // Full-text search (GET /api/v1/search): the query, and its results while one is shown.
  search: { q: '', results: null, busy: false, next: null },
  // Whether the server has more of the view than is listed (a full page came back).
  more: false,
  // How many tickets each view holds (GET /api/v1/tickets/counts: the server's, not the snapshot's).
  counts: null,
  // The page shown in place of the list and the conversation: the administration page's tab while
  // it is open (admins and owners), 'reports' for the Reports page (supervisors and above), else null.
  page: null,
  // The customer panel, on screens too narrow to show it beside the conversation.
  panel: false,
};

let redraw = () => {};
let queued = false;
function changed() {
  // setTimeout rather than requestAnimationFrame: the latter does not run in a background tab,
  // where the title still shows the unread count.
  if (queued) return;
  queued = true;
  setTimeout(() => { queued = false; redraw(); }, 0);
}

const live = new Live({
  words: t,
  onState: (up) => { state.connected = up; changed(); },
  onWelcome: welcome,
  onEvent: (ev) => { applyEvent(ev, false); changed(); },
  onLive: heardLive,
  onUnauthorized: () => signOut(t('login.expired')),
  onError: (message) => { state.error = message; changed(); },
});

// ---- HTTP ----------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new Error(t('error.unreachable'));
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error((data.error && data.error.message) || t('error.request', { status: res.status }));
    err.status = res.status;
    err.code = data.error && data.error.code;
    if (res.status === 401 && state.token && path !== '/api/v1/auth/login') signOut(t('login.expired'));
    throw err;
  }
  return data;
}

async function loadPeople() {
  try {
    const [agents, groups] = await Promise.all([api('GET', '/api/v1/agents'), api('GET', '/api/v1/groups')]);
    state.agents = new Map((agents.agents || []).map((a) => [a.id, a]));
    state.groups = new Map((groups.groups || []).map((g) => [g.id, g]));
    changed();
  } catch { /* names fall back to "agent 7" until the next try */ }
}

// Read again after ticket events, at most every half second: nothing is counted per event.
let countsTimer = 0;
function refreshCounts() {
  if (countsTimer) return;
  countsTimer = setTimeout(async () => {
    try {
      state.counts = (await api('GET', '/api/v1/tickets/counts')).counts || null;
      changed();
    } catch { /* the snapshot's counts show until the next try */ }
    countsTimer = 0;
  }, 500);
}

// The view's tickets from the server (GET /api/v1/tickets with the view and the filters), a page at a
// time: the live snapshot holds at most the newest 500 open tickets, so solved ones and a large
// tenant's older ones come from here.
const VIEW_PAGE = 100;
let viewTimer = 0;
function loadView(more = false) {
  clearTimeout(viewTimer);
  viewTimer = setTimeout(async () => {
    const f = state.filters;
    const q = new URLSearchParams({ view: state.view, limit: String(VIEW_PAGE) });
    for (const [key, param] of [['channel', 'channel'], ['group', 'group_id'], ['tag', 'tag'], ['priority', 'priority'],
      ['assignee', 'assignee_id']]) if (f[key]) q.set(param, f[key]);
    const shown = listed();
    if (more && shown.length) q.set('before_id', String(Math.min(...shown.map((x) => x.id))));
    try {
      const rows = (await api('GET', `/api/v1/tickets?${q}`)).tickets || [];
      for (const x of rows) upsertTicket(x);
      state.more = rows.length === VIEW_PAGE;
      changed();
    } catch { /* the snapshot's tickets stay listed */ }
  }, more ? 0 : 150);
}

let queueTimer = 0;
function refreshQueue() {
  clearTimeout(queueTimer);
  queueTimer = setTimeout(async () => {
    try {
      state.queue = (await api('GET', '/api/v1/queue?limit=200')).queue || [];
      changed();
    } catch { /* shown again at the next event */ }
  }, 300);
}

// ---- signing in and out --------------------------------------------------------------------------
async function signIn(email, password) {
  const data = await api('POST', '/api/v1/auth/login', { email, password });
  state.token = data.token;
  state.agent = data.agent || null;
  store.set(TOKEN_KEY, data.token);
  start();
}

async function loadMentions() {
  try {
    const found = await api('GET', '/api/v1/me/mentions?limit=30');
    state.mentions = { list: found.mentions || [], unread: found.unread || 0 };
    changed();
  } catch { /* shown at the next mention */ }
}

async function loadMacros() {
  try { state.macros = (await api('GET', '/api/v1/macros')).macros || []; changed(); } catch { /* none shown */ }
}

function start() {
  live.start(state.token);
  loadPeople();
  loadMentions();
  loadMacros();
  refreshQueue();
  refreshCounts();
  changed();
}

function signOut(message) {
  live.stop();
  for (const k of [TOKEN_KEY, UNREAD_KEY, PRESENCE_KEY]) store.del(k);
  Object.assign(state, {
    token: null, agent: null, connected: false, tickets: new Map(), queue: [], unread: new Set(),
    selectedId: null, viewTicket: null, thread: null, error: '', loginError: message || '', overlay: null,
    seenEvents: new Set(), live: new Map(), counts: null, page: null, panel: false,
  });
  changed();
}

// ---- the socket's news ---------------------------------------------------------------------------
let welcomed = false;
function welcome(f) {
  const reconnect = welcomed;
  welcomed = true;
  state.agent = f.agent || state.agent;
  state.tickets = new Map();
  for (const ticket of f.tickets || []) if (ticket && ticket.status !== 'closed') state.tickets.set(ticket.id, ticket);
  if (state.selectedId != null && state.tickets.has(state.selectedId)) {
    state.viewTicket = state.tickets.get(state.selectedId);
  }
  // Missed events add messages and unread marks; their ticket copies are older than the snapshot.
  for (const ev of f.events || []) applyEvent(ev, true);
  const wanted = store.get(PRESENCE_KEY);
  const current = state.agent && state.agent.status;
  const presence = wanted || (current === 'away' ? 'away' : 'online');
  if (presence !== current) {
    live.send({ type: 'presence', status: presence });
    if (state.agent) state.agent = { ...state.agent, status: presence };
  }
  if (reconnect && state.selectedId != null) loadThread(state.selectedId);
  if (state.selectedId != null) viewing(state.selectedId, true);
  refreshQueue();
  refreshCounts();
  loadView();
  changed();
}

const stamp = (x) => Date.parse(x && (x.updated_at || x.created_at)) || 0;
const activity = (x) => Date.parse(x.last_message_at || x.updated_at || x.created_at) || 0;

function applyEvent(ev, backlog) {
  if (!ev || !Number.isInteger(ev.id) || state.seenEvents.has(ev.id)) return;
  state.seenEvents.add(ev.id);
  if (state.seenEvents.size > SEEN_EVENTS_MAX) {
    let n = SEEN_EVENTS_MAX / 2;
    for (const id of state.seenEvents) { if (n-- <= 0) break; state.seenEvents.delete(id); }
  }
  if (ev.ticket && !backlog) upsertTicket(ev.ticket);
  const selected = ev.ticket_id === state.selectedId;
  const me = state.agent && state.agent.id;
  if (ev.kind === 'message.created' && ev.message) {
    if (selected) addMessage(ev.message);
    if (ev.message.direction === 'inbound' && (!selected || document.hidden)) {
      markUnread(ev.ticket_id);
      if (!backlog) notify(t('notify.new_message', { name: customerName(ev.ticket || state.tickets.get(ev.ticket_id)) }),
        ev.message.text || '', ev.ticket_id);
    }
  } else if (ev.kind === 'ticket.created' && !selected) {
    markUnread(ev.ticket_id);
    if (!backlog && ev.ticket) notify(t('notify.new_ticket', { title: ticketTitle(ev.ticket) }), '', ev.ticket_id);
  } else if (ev.kind === 'ticket.assigned' && !selected && ev.ticket && ev.ticket.assignee_id === me) {
    markUnread(ev.ticket_id);
  } else if (ev.kind === 'csat.rated' && selected && state.thread) {
    // The customer rated the open ticket: its line under the conversation shows it at once.
    state.thread.csat = { ...(state.thread.csat || {}), rating: ev.rating, comment: ev.comment };
  } else if (ev.kind === 'mention' && ev.mentioned_agent_id === me) {
    if (!backlog) {
      const who = (ev.author && ev.author.name) || t('ticket.agent');
      notify(t('notify.mention', { name: who }), plainMentions(ev.text || ''), ev.ticket_id, true);
    }
    loadMentions();
  }
  if (ev.kind === 'sla.breached' || ev.kind === 'sla.warning' || (ev.kind === 'message.created' && ev.message
      && ev.message.direction === 'outbound')) slaNews(ev);
  if (ev.kind && ev.kind.startsWith('ticket.')) { refreshQueue(); refreshCounts(); }
  if (ev.kind === 'agent.presence' || ev.kind === 'ticket.assigned' || ev.kind === 'ticket.unassigned') {
    loadPeopleSoon();
  }
}

// ---- SLA deadlines (core.sla): the soonest open one of a ticket, counted down here ------------------
function slaNews(ev) {
  const ticket = state.tickets.get(ev.ticket_id) || (state.viewTicket && state.viewTicket.id === ev.ticket_id
    ? state.viewTicket : null);
  if (!ticket || !ticket.sla) return;
  let sla;
  if (ev.kind === 'message.created') {
    // An agent's reply meets the response deadlines (the sweeper confirms it a moment later).
    sla = ticket.sla.filter((d) => d.target === 'resolution');
  } else {
    const field = ev.kind === 'sla.breached' ? 'breached_at' : 'warned_at';
    sla = ticket.sla.map((d) => (d.target === ev.target && d.due_at === ev.due_at ? { ...d, [field]: ev.due_at } : d));
  }
  const next = { ...ticket, sla };
  if (state.tickets.has(ticket.id)) state.tickets.set(ticket.id, next);
  if (state.viewTicket && state.viewTicket.id === ticket.id) state.viewTicket = next;
  changed();
}

function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m` : `${s % 60}s`;
}

function Deadline({ ticket, id }) {
  const first = (ticket.sla || [])[0];
  if (!first || ticket.status === 'solved' || ticket.status === 'closed') return null;
  const target = t(`sla.${first.target}`);
  let text, cls;
  if (first.breached_at) {
    [text, cls] = [t('sla.breached', { target }), 'breached'];
  } else if (first.paused) {
    [text, cls] = [t('sla.paused', { target, time: span(first.remaining || 0) }), 'paused'];
  } else if (first.due_at) {
    const left = (Date.parse(first.due_at) - Date.now()) / 1000;
    [text, cls] = left < 0 ? [t('sla.overdue', { target, time: span(-left) }), 'breached']
      : [t('sla.due_in', { target, time: span(left) }), first.warned_at ? 'warned' : 'running'];
  } else return null;
  return html`<span id=${id} class=${`badge sla sla-${cls}`} title=${t('sla.title')}>${text}</span>`;
}
// The countdowns move on by themselves.
setInterval(() => { if (state.token) changed(); }, 15000);

let peopleTimer = 0;
function loadPeopleSoon() {
  clearTimeout(peopleTimer);
  peopleTimer = setTimeout(loadPeople, 1000);
}

function upsertTicket(ticket) {
  if (!ticket || ticket.id == null) return;
  const known = state.tickets.get(ticket.id) || (state.viewTicket && state.viewTicket.id === ticket.id ? state.viewTicket : null);
  if (known && stamp(known) > stamp(ticket)) return; // never let an older copy win
  // Events' copies carry no SLA deadlines (core.sla computes them a moment later): keep the known ones.
  if (ticket.sla === undefined && known && known.sla) ticket = { ...ticket, sla: known.sla };
  if (ticket.status === 'closed') {
    state.tickets.delete(ticket.id);
    state.unread.delete(ticket.id);
    saveUnread();
  } else {
    state.tickets.set(ticket.id, ticket);
  }
  if (ticket.id === state.selectedId) state.viewTicket = ticket;
  changed();
}

function markUnread(id) {
  if (!state.tickets.has(id) && !state.queue.some((q) => q.id === id)) return;
  state.unread.add(id);
  saveUnread();
}
const saveUnread = () => store.set(UNREAD_KEY, JSON.stringify([...state.unread]));

// A browser notification and a short tone for news while the tab is hidden (when the agent
// allowed them), and the unread count in the title in any case.
function notify(title, body, ticketId, always = false) {
  if (!document.hidden && !always) return;
  if (prefs.notify && 'Notification' in window && Notification.permission === 'granted') {
    const n = new Notification(title, { body: body.slice(0, 140), tag: `ticket-${ticketId}` });
    n.onclick = () => { window.focus(); select(ticketId); n.close(); };
  }
  if (prefs.sound) beep();
}

let audio = null;
function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  } catch { /* no audio here */ }
}

// ---- who else is here: typing and viewing (live signals, never stored) --------------------------
const TYPING_SHOWN = 8000;   // a lost "paused" must not leave it showing
const VIEWING_SHOWN = 45000; // viewers say so again every 20 s
function heardLive(f) {
  if (!f || !Number.isInteger(f.ticket_id) || !f.by) return;
  const key = `${f.type}:${f.by.type}:${f.by.id == null ? '' : f.by.id}`;
  const on = (f.type === 'typing' && f.state === 'composing') || (f.type === 'viewing' && f.state === 'viewing');
  const here = state.live.get(f.ticket_id) || new Map();
  if (on) here.set(key, { kind: f.type, by: f.by, until: Date.now() + (f.type === 'typing' ? TYPING_SHOWN : VIEWING_SHOWN) });
  else here.delete(key);
  if (here.size) state.live.set(f.ticket_id, here); else state.live.delete(f.ticket_id);
  changed();
}
function liveOn(ticketId, kind) {
  const now = Date.now();
  return [...(state.live.get(ticketId) || new Map()).values()].filter((x) => x.kind === kind && x.until > now);
}
setInterval(() => { if (state.live.size) changed(); }, 2000); // let the stale ones go

let viewingTimer = 0;
function viewing(ticketId, on) {
  clearInterval(viewingTimer);
  if (ticketId == null) return;
  signal({ type: 'viewing', ticket_id: ticketId, state: on ? 'viewing' : 'left' });
  if (on) viewingTimer = setInterval(() => signal({ type: 'viewing', ticket_id: ticketId, state: 'viewing' }), 20000);
}

let typingSent = { ticketId: null, state: 'paused', at: 0 };
let typingIdle = 0;
function typing(ticketId, next) {
  clearTimeout(typingIdle);
  if (next === 'composing') typingIdle = setTimeout(() => typing(ticketId, 'paused'), 5000);
  const now = Date.now();
  const same = typingSent.ticketId === ticketId && typingSent.state === next;
  if (same && (next === 'paused' || now - typingSent.at < 3000)) return;
  if (next === 'paused' && typingSent.state === 'paused') return;
  typingSent = { ticketId, state: next, at: now };
  signal({ type: 'typing', ticket_id: ticketId, state: next });
}

// Typing and viewing are best effort: sent with a ref, so a refusal is the answer to it (and
// ignored) rather than an error frame shown to the agent.
function signal(frame) {
  if (live.ready) live.action(frame).catch(() => {});
}

// ---- @mentions: notes name colleagues as @[Name](agent:42); shown as @Name --------------------
const MENTION = /@\[([^\]]+)\]\(agent:(\d+)\)/g;
const plainMentions = (text) => text.replace(MENTION, (m, name) => `@${name}`);
function withMentions(text) {
  const parts = [];
  let at = 0;
  for (const m of text.matchAll(MENTION)) {
    if (m.index > at) parts.push(text.slice(at, m.index));
    parts.push(html`<span class="mention" data-agent=${m[2]}>@${m[1]}</span>`);
    at = m.index + m[0].length;
  }
  if (at < text.length) parts.push(text.slice(at));
  return parts;
}

// ---- names, never ids ----------------------------------------------------------------------------
const agentName = (id) => {
  const a = state.agents.get(id);
  return a ? (a.name || a.email) : t('agent.unknown', { id });
};
const groupName = (id) => {
  const g = state.groups.get(id);
  return g ? g.name : t('group.unknown', { id });
};
const customerName = (ticket) => (ticket && ticket.customer && (ticket.customer.name || ticket.customer.email))
  || t('ticket.customer');
const ticketTitle = (ticket) => ticket.subject || (ticket.customer && (ticket.customer.name || ticket.customer.email))
  || t('ticket.untitled', { id: ticket.id });

function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toDateString() === new Date().toDateString()
    ? d.toLocaleTimeString(lang(), { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString(lang(), { month: 'short', day: 'numeric' });
}
const fileSize = (n) => (n >= 1048576 ? t('size.mb', { n: (n / 1048576).toFixed(1) })
  : n >= 1024 ? t('size.kb', { n: Math.round(n / 1024) }) : t('size.b', { n }));

// ---- views and filters ---------------------------------------------------------------------------
function inView(view, ticket) {
  const me = state.agent && state.agent.id;
  switch (view) {
    case 'mine': return ticket.assignee_id === me && ACTIVE.has(ticket.status);
    case 'unassigned': return ticket.assignee_id == null && ACTIVE.has(ticket.status);
    case 'all': return ACTIVE.has(ticket.status);
    case 'pending': return ticket.status === 'pending';
    case 'solved': return ticket.status === 'solved';
    default: return false;
  }
}

function allTickets() {
  const out = new Map(state.tickets);
  for (const q of state.queue) if (!out.has(q.id)) out.set(q.id, q);
  return [...out.values()];
}

const isAdmin = () => state.agent && ['owner', 'admin'].includes(state.agent.role);
const seesAll = () => state.agent && ['owner', 'admin', 'supervisor'].includes(state.agent.role);
const views = () => VIEWS.filter((v) => v !== 'all' || seesAll());

function passes(ticket) {
  const f = state.filters;
  return (!f.channel || ticket.channel === f.channel)
    && (!f.group || String(ticket.group_id) === f.group)
    && (!f.priority || ticket.priority === f.priority)
    && (!f.tag || (ticket.tags || []).includes(f.tag))
    && (!f.assignee || String(ticket.assignee_id) === f.assignee);
}

function listed() {
  return allTickets().filter((x) => inView(state.view, x) && passes(x)).sort((a, b) => activity(b) - activity(a));
}

// ---- a ticket ------------------------------------------------------------------------------------
function select(id) {
  if (id === state.selectedId) return;
  if (state.selectedId != null) viewing(state.selectedId, false);
  viewing(id, true);
  state.selectedId = id;
  state.viewTicket = state.tickets.get(id) || state.queue.find((q) => q.id === id) || null;
  state.thread = { ticketId: id, messages: new Map(), loading: true };
  state.unread.delete(id);
  saveUnread();
  state.error = '';
  state.overlay = null;
  state.panel = false;
  changed();
  loadThread(id);
}

function back() {
  if (state.selectedId != null) viewing(state.selectedId, false);
  state.selectedId = null;
  state.viewTicket = null;
  state.thread = null;
  changed();
}

async function loadThread(id) {
  try {
    const data = await api('GET', `/api/v1/tickets/${encodeURIComponent(id)}`);
    const th = state.thread;
    if (!th || th.ticketId !== id) return;
    if (data.ticket) {
      upsertTicket(data.ticket);
      if (!state.viewTicket || stamp(data.ticket) >= stamp(state.viewTicket)) state.viewTicket = data.ticket;
    }
    for (const m of data.messages || []) if (m && m.id != null) th.messages.set(m.id, m);
    th.csat = data.csat || null;
    th.loading = false;
  } catch (err) {
    if (state.selectedId === id) {
      state.error = err.message;
      if (state.thread) state.thread.loading = false;
    }
  }
  changed();
}

function addMessage(m) {
  const th = state.thread;
  if (!th || !m || m.id == null || th.messages.has(m.id)) return;
  th.messages.set(m.id, m);
  changed();
}

async function act(frame) {
  state.error = '';
  try {
    const data = await live.action(frame);
    if (data.ticket) upsertTicket(data.ticket);
    if (data.message) addMessage(data.message);
    return data;
  } catch (err) {
    state.error = err.message;
    changed();
    return null;
  }
}

// ---- components ----------------------------------------------------------------------------------
function Login() {
  const [busy, setBusy] = useState(false);
  const email = useRef(null);
  const password = useRef(null);
  useEffect(() => { (email.current.value ? password.current : email.current).focus(); }, []);
  async function submit(e) {
    e.preventDefault();
    const address = email.current.value.trim();
    const secret = password.current.value;
    if (!address || !secret) { state.loginError = t('login.missing'); changed(); return; }
    setBusy(true);
    state.loginError = '';
    try {
      await signIn(address, secret);
    } catch (err) {
      state.loginError = err.message;
      password.current.value = '';
    } finally {
      setBusy(false);
      changed();
    }
  }
  return html`
    <section id="login-view">
      <form id="login-form" novalidate onSubmit=${submit}>
        <h1>${t('login.heading')}</h1>
        <label>${t('login.email')} <input id="login-email" ref=${email} type="email" autocomplete="username" required /></label>
        <label>${t('login.password')} <input id="login-password" ref=${password} type="password" autocomplete="current-password" required /></label>
        <button id="login-submit" class="primary" type="submit" disabled=${busy}>${t('login.submit')}</button>
        <p id="login-error" class="error" role="alert">${state.loginError}</p>
        <${LangSwitch} />
      </form>
    </section>`;
}

function LangSwitch() {
  async function change(e) {
    await loadLang(e.target.value, { remember: true });
    document.title = t('app.title');
    changed();
  }
  return html`
    <select id="lang" aria-label=${t('header.language')} value=${lang()} onChange=${change}>
      ${Object.entries(LANGS).map(([code, name]) => html`<option value=${code}>${name}</option>`)}
    </select>`;
}

function Header() {
  const a = state.agent;
  const presence = (a && a.status === 'away') ? 'away' : 'online';
  function setPresence(e) {
    store.set(PRESENCE_KEY, e.target.value);
    if (state.agent) state.agent = { ...state.agent, status: e.target.value };
    live.send({ type: 'presence', status: e.target.value });
    changed();
  }
  async function toggleNotify(e) {
    prefs.notify = e.target.checked;
    if (prefs.notify && 'Notification' in window && Notification.permission === 'default') {
      await Notification.requestPermission();
    }
    savePrefs();
    changed();
  }
  function toggleSound(e) { prefs.sound = e.target.checked; savePrefs(); if (prefs.sound) beep(); changed(); }
  async function logout() {
    try { await api('POST', '/api/v1/auth/logout'); } catch { /* signing out here anyway */ }
    signOut();
  }
  const conn = state.connected ? 'connected' : 'reconnecting';
  return html`
    <header id="top">
      <span class="brand">${t('app.brand')}</span>
      <span id="conn" data-state=${conn} role="status">${t(`conn.${conn}`)}</span>
      <span id="agent-name">${a ? (a.name || a.email || '') : ''}</span>
      <select id="presence" aria-label=${t('presence.label')} value=${presence} onChange=${setPresence}>
        <option value="online">${t('presence.online')}</option>
        <option value="away">${t('presence.away')}</option>
      </select>
      <label class="toggle"><input id="notify" type="checkbox" checked=${!!prefs.notify} onChange=${toggleNotify} /> ${t('header.notify')}</label>
      <label class="toggle"><input id="sound" type="checkbox" checked=${!!prefs.sound} onChange=${toggleSound} /> ${t('header.sound')}</label>
      <${MentionsMenu} />
      <${LangSwitch} />
      ${seesAll() && html`<button id="reports-open" type="button" aria-pressed=${state.page === 'reports'}
        onClick=${() => { state.page = state.page === 'reports' ? null : 'reports'; changed(); }}>${t('header.reports')}</button>`}
      ${isAdmin() && html`<button id="admin-open" type="button" aria-pressed=${state.page != null && state.page !== 'reports'}
        onClick=${() => { state.page = state.page && state.page !== 'reports' ? null : 'widget'; changed(); }}>${t('header.admin')}</button>`}
      <button id="shortcuts-open" type="button" title=${t('header.shortcuts')} aria-label=${t('header.shortcuts')}
        onClick=${() => { state.overlay = 'shortcuts'; changed(); }}>?</button>
      <button id="logout" type="button" onClick=${logout}>${t('header.logout')}</button>
    </header>`;
}

function Views() {
  // The server's counts once read (they cover every ticket, not only the snapshot's); until then,
  // what the snapshot and the queue hold.
  const counts = {};
  const every = allTickets();
  for (const v of views()) {
    counts[v] = state.counts && Number.isInteger(state.counts[v]) ? state.counts[v] : every.filter((x) => inView(v, x)).length;
  }
  return html`
    <div id="views" role="tablist" aria-label=${t('views.label')}>
      ${views().map((v) => html`
        <button type="button" role="tab" class="view" data-view=${v} aria-selected=${state.view === v}
          onClick=${() => { state.view = v; prefs.view = v; savePrefs(); loadView(); changed(); }}>
          ${t(`views.${v}`)} <span class="count" data-count=${v}>${counts[v]}</span>
        </button>`)}
    </div>`;
}

function Filters() {
  const every = allTickets();
  const channels = [...new Set(every.map((x) => x.channel).filter(Boolean))].sort();
  const tags = [...new Set(every.flatMap((x) => x.tags || []))].sort();
  const f = state.filters;
  const set = (key) => (e) => { f[key] = e.target.value; loadView(); changed(); };
  const any = html`<option value="">${t('filters.any')}</option>`;
  const active = Object.values(f).some(Boolean);
  return html`
    <details id="filters" open=${active}>
      <summary>${t('filters.label')}</summary>
      <div class="filter-grid">
        <label>${t('filters.channel')}<select id="filter-channel" value=${f.channel} onChange=${set('channel')}>
          ${any}${channels.map((c) => html`<option value=${c}>${channelName(c)}</option>`)}</select></label>
        <label>${t('filters.group')}<select id="filter-group" value=${f.group} onChange=${set('group')}>
          ${any}${[...state.groups.values()].map((g) => html`<option value=${String(g.id)}>${g.name}</option>`)}</select></label>
        <label>${t('filters.priority')}<select id="filter-priority" value=${f.priority} onChange=${set('priority')}>
          ${any}${PRIORITIES.map((p) => html`<option value=${p}>${t(`priority.${p}`)}</option>`)}</select></label>
        <label>${t('filters.tag')}<select id="filter-tag" value=${f.tag} onChange=${set('tag')}>
          ${any}${tags.map((x) => html`<option value=${x}>${x}</option>`)}</select></label>
        <label>${t('filters.assignee')}<select id="filter-assignee" value=${f.assignee} onChange=${set('assignee')}>
          ${any}${[...state.agents.values()].map((a) => html`<option value=${String(a.id)}>${a.name || a.email}</option>`)}</select></label>
        ${active && html`<button id="filters-clear" type="button" onClick=${() => {
          Object.keys(f).forEach((k) => { f[k] = ''; }); loadView(); changed();
        }}>${t('filters.clear')}</button>`}
      </div>
    </details>`;
}

// ---- search: subjects, messages and customers, Chinese and English (GET /api/v1/search) ----------
let searchTimer = 0;
function searchFor(q) {
  state.search.q = q;
  clearTimeout(searchTimer);
  if (!q.trim()) { state.search = { q, results: null, busy: false, next: null }; changed(); return; }
  searchTimer = setTimeout(() => runSearch(q, null), 250);
}
async function runSearch(q, before) {
  state.search.busy = true;
  changed();
  try {
    const found = await api('GET', `/api/v1/search?q=${encodeURIComponent(q)}&limit=20${before ? `&before=${before}` : ''}`);
    if (state.search.q !== q) return; // typed on meanwhile
    state.search.results = before ? [...(state.search.results || []), ...found.results] : found.results;
    state.search.next = found.next_before;
  } catch (err) {
    state.error = err.message;
  } finally {
    state.search.busy = false;
    changed();
  }
}

// The snippet with its matches marked: offsets count UTF-16 code units, as JavaScript strings do.
function Marked({ snippet }) {
  const text = (snippet && snippet.text) || '';
  const parts = [];
  let at = 0;
  for (const [a, b] of (snippet && snippet.highlights) || []) {
    if (a > at) parts.push(text.slice(at, a));
    parts.push(html`<mark>${text.slice(a, b)}</mark>`);
    at = b;
  }
  if (at < text.length) parts.push(text.slice(at));
  return html`<span class="snippet">${snippet && snippet.truncated_before ? '…' : ''}${parts}${
    snippet && snippet.truncated_after ? '…' : ''}</span>`;
}

function SearchResults() {
  const found = state.search.results || [];
  return html`
    <ul id="search-results" role="listbox" aria-label=${t('search.results')}>
      ${!found.length && !state.search.busy && html`<li class="empty">${t('search.none')}</li>`}
      ${found.map((r) => html`
        <li key=${r.ticket_id} class=${`ticket result${r.ticket_id === state.selectedId ? ' selected' : ''}`}
          data-id=${r.ticket_id} tabindex="0" role="option" onClick=${() => select(r.ticket_id)}
          onKeyDown=${(e) => { if (e.key === 'Enter') select(r.ticket_id); }}>
          <div class="ticket-title">${r.subject || (r.customer && r.customer.name) || t('ticket.untitled', { id: r.ticket_id })}</div>
          <div class="result-snippet"><span class="badge">${t(`search.matched_${r.matched}`)}</span> <${Marked} snippet=${r.snippet} /></div>
          <div class="ticket-meta"><span class=${`badge status-${r.status}`}>${t(`status.${r.status}`)}</span>
            <span>${channelName(r.channel)}</span><span>${r.customer && r.customer.name}</span>
            <span class="time">${when(r.updated_at)}</span></div>
        </li>`)}
      ${state.search.next && html`<li><button type="button" id="search-more"
        onClick=${() => runSearch(state.search.q, state.search.next)}>${t('search.more')}</button></li>`}
    </ul>`;
}

function TicketList() {
  const items = listed();
  function key(e, id) {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(id); }
  }
  async function claim(e, id) {
    e.stopPropagation();
    const data = await act({ type: 'claim', ticket_id: id });
    if (data) { refreshQueue(); select(id); }
  }
  return html`
    <nav id="ticket-list" aria-label=${t('list.heading')}>
      <form id="search-form" role="search" onSubmit=${(e) => { e.preventDefault(); runSearch(state.search.q, null); }}>
        <input id="search" type="search" value=${state.search.q} placeholder=${t('search.placeholder')}
          aria-label=${t('search.placeholder')} onInput=${(e) => searchFor(e.target.value)} />
      </form>
      ${state.search.results != null ? html`<${SearchResults} />` : html`
      <${Views} />
      <${Filters} />
      <ul id="tickets" role="listbox" aria-label=${t('list.heading')}>
        ${!items.length && html`<li class="empty">${t('list.empty')}</li>`}
        ${items.map((x) => html`
          <li key=${x.id} class=${`ticket${x.id === state.selectedId ? ' selected' : ''}${state.unread.has(x.id) ? ' unread' : ''}`}
            data-id=${x.id} tabindex="0" role="option" aria-selected=${x.id === state.selectedId}
            onClick=${() => select(x.id)} onKeyDown=${(e) => key(e, x.id)}>
            ${state.unread.has(x.id) && html`<span class="unread-dot" title=${t('list.unread')}></span>`}
            <div class="ticket-title">${ticketTitle(x)}</div>
            <div class="ticket-meta">
              <span class=${`badge status-${x.status}`}>${t(`status.${x.status}`)}</span>
              ${x.priority && x.priority !== 'normal' && html`<span class=${`badge priority-${x.priority}`}>${t(`priority.${x.priority}`)}</span>`}
              <${Deadline} ticket=${x} />
              <span class="channel">${channelName(x.channel)}</span>
              ${x.assignee_id != null && html`<span class="assignee">${agentName(x.assignee_id)}</span>`}
              <span class="time">${when(x.last_message_at || x.updated_at)}</span>
              ${x.assignee_id == null && ACTIVE.has(x.status) && html`
                <button type="button" class="claim" onClick=${(e) => claim(e, x.id)}>${t('list.claim')}</button>`}
            </div>
          </li>`)}
        ${state.more && html`<li class="more"><button type="button" id="list-more" onClick=${() => loadView(true)}>
          ${t('list.more')}</button></li>`}
      </ul>`}
    </nav>`;
}

function Attachment({ a }) {
  const url = typeof a.url === 'string' ? a.url : '';
  const name = a.name || 'file';
  const label = a.size ? `${name} (${fileSize(a.size)})` : name;
  const [src, setSrc] = useState(null);
  const image = url.startsWith('/api/') && /^image\//.test(a.content_type || '');
  useEffect(() => {
    if (!image) return undefined;
    let made = null;
    blobUrl(url).then((u) => { made = u; setSrc(u); }).catch(() => setSrc(null));
    return () => { if (made) URL.revokeObjectURL(made); };
  }, [url]);
  async function download(e) {
    e.preventDefault();
    try {
      const save = document.createElement('a');
      save.href = await blobUrl(url);
      save.download = name;
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(save.href), 60000);
    } catch (err) {
      state.error = err.message;
      changed();
    }
  }
  if (url.startsWith('/api/')) {
    return html`<div class="att-box"><a class="att" href="#" onClick=${download}>${label}</a>
      ${image && src && html`<img class="att-img" alt=${name} src=${src} />`}</div>`;
  }
  if (/^https?:\/\//i.test(url)) {
    return html`<div class="att-box"><a class="att" href=${url} target="_blank" rel="noopener noreferrer">${label}</a></div>`;
  }
  return html`<div class="att-box"><span class="att">${label}</span></div>`;
}

// Our files need the agent's token, which a plain link cannot carry: fetched with it, as a blob.
async function blobUrl(url) {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
  if (!res.ok) throw new Error(t('error.file', { status: res.status }));
  return URL.createObjectURL(await res.blob());
}

async function splitOff(m) {
  const id = state.selectedId;
  state.error = '';
  try {
    const done = await api('POST', `/api/v1/tickets/${id}/messages/${m.id}/split`, { following: false });
    if (done.source) upsertTicket(done.source);
    if (done.ticket) { upsertTicket(done.ticket); select(done.ticket.id); }
  } catch (err) { state.error = err.message; changed(); }
}

function Message({ m }) {
  const dir = ['inbound', 'outbound', 'note'].includes(m.direction) ? m.direction : 'inbound';
  const author = (m.author && m.author.name)
    || (dir === 'inbound' ? customerName(state.viewTicket) : t('ticket.agent'));
  const meta = [author, dir === 'note' ? t('ticket.note') : '', when(m.created_at)].filter(Boolean).join(' · ');
  return html`
    <div class=${`msg msg-${dir}`} data-id=${m.id} data-meta=${meta}
      title=${m.created_at ? new Date(m.created_at).toLocaleString(lang()) : ''}>${
      dir === 'note' ? withMentions(m.text || '') : (m.text || '')}${
      (Array.isArray(m.attachments) ? m.attachments : []).filter((a) => a && typeof a === 'object')
        .map((a) => html`<${Attachment} key=${a.id || a.url} a=${a} />`)}${
      dir === 'inbound' && html`<button type="button" class="split link" title=${t('merge.split')}
        aria-label=${t('merge.split')} onClick=${() => splitOff(m)}>${t('merge.split')}</button>`}</div>`;
}

function Thread() {
  const box = useRef(null);
  const th = state.thread;
  const messages = th ? [...th.messages.values()].sort((a, b) => a.id - b.id) : [];
  const last = messages.length ? messages[messages.length - 1].id : 0;
  const atBottom = useRef(true);
  useEffect(() => {
    const el = box.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [last, th && th.ticketId]);
  function onScroll() {
    const el = box.current;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
  }
  return html`
    <div id="thread" role="log" aria-live="polite" ref=${box} onScroll=${onScroll}>
      ${th && th.loading && !messages.length && html`<p class="empty">${t('ticket.loading')}</p>`}
      ${messages.map((m) => html`<${Message} key=${m.id} m=${m} />`)}
      ${th && th.csat && html`<${CsatLine} s=${th.csat} />`}
    </div>`;
}

// The customer's satisfaction rating of the ticket (core.csat), or that a survey was sent.
function CsatLine({ s }) {
  if (s.rating == null) return html`<p class="csat-line">${t('csat.asked')}</p>`;
  const stars = '★'.repeat(s.rating) + '☆'.repeat(5 - s.rating);
  return html`<p class="csat-line" data-rating=${s.rating}>
    <span class="csat-stars" aria-hidden="true">${stars}</span> ${t('csat.rated', { rating: s.rating })}
    ${s.comment && html`<q class="csat-comment">${s.comment}</q>`}</p>`;
}

const newClientId = () => `c${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
let unconfirmed = null; // { key, clientId }: a resend of the same message reuses its client id

function Composer() {
  const text = useRef(null);
  const files = useRef(null);
  const [busy, setBusy] = useState(false);
  const [chosen, setChosen] = useState([]);
  const [slash, setSlash] = useState(null); // the text after "/" while the agent picks a canned reply
  const [at, setAt] = useState(null);       // the text after "@" while the agent picks a colleague
  function watchSlash(value) {
    const found = /(?:^|\s)\/([^\s/]*)$/.exec(value);
    setSlash(found ? found[1] : null);
    const mention = /(?:^|\s)@([^\s@\[]*)$/.exec(value);
    setAt(mention ? mention[1] : null);
  }
  function pickAgent(a) {
    const el = text.current;
    el.value = el.value.replace(/(^|\s)@[^\s@\[]*$/, (m, space) => `${space}@[${a.name || a.email}](agent:${a.id}) `);
    setAt(null);
    el.focus();
  }
  async function pickCanned(c) {
    const id = state.selectedId;
    setSlash(null);
    try {
      const rendered = await api('POST', `/api/v1/tickets/${id}/canned-replies/${c.id}/render`);
      const el = text.current;
      el.value = el.value.replace(/(^|\s)\/[^\s/]*$/, (m, space) => space) + rendered.text;
      el.focus();
    } catch (err) { state.error = err.message; changed(); }
  }
  async function upload(file) {
    const res = await fetch(`/api/v1/attachments?name=${encodeURIComponent(file.name)}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${state.token}`, 'Content-Type': file.type || 'application/octet-stream' },
      body: file,
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((data.error && `${file.name}: ${data.error.message}`) || t('error.upload', { name: file.name, status: res.status }));
    return data.attachment.id;
  }
  async function submit(kind) {
    const body = text.current.value.trim();
    const chosen = [...files.current.files];
    const id = state.selectedId;
    if ((!body && !chosen.length) || id == null) return;
    setBusy(true);
    state.error = '';
    typing(id, 'paused');
    const key = JSON.stringify([kind, id, body, chosen.map((f) => [f.name, f.size])]);
    if (!unconfirmed || unconfirmed.key !== key) unconfirmed = { key, clientId: newClientId() };
    try {
      const frame = { type: kind, ticket_id: id, text: body, client_id: unconfirmed.clientId };
      if (chosen.length) frame.attachments = await Promise.all(chosen.map(upload));
      const data = await act(frame);
      if (data) {
        if (unconfirmed && unconfirmed.key === key) unconfirmed = null;
        if (text.current.value.trim() === body) text.current.value = '';
        files.current.value = '';
        setChosen([]);
      }
    } catch (err) {
      state.error = err.message;
    } finally {
      setBusy(false);
      changed();
    }
  }
  function onKey(e) {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submit('reply'); }
  }
  return html`
    <div id="composer">
      <textarea id="reply-text" ref=${text} placeholder=${t('composer.placeholder')} aria-label=${t('composer.label')}
        onKeyDown=${onKey} onInput=${(e) => {
          typing(state.selectedId, e.target.value.trim() ? 'composing' : 'paused');
          watchSlash(e.target.value);
        }}></textarea>
      ${slash != null && html`<${CannedPicker} query=${slash} onPick=${pickCanned} onClose=${() => setSlash(null)} />`}
      ${at != null && html`<${AgentPicker} query=${at} onPick=${pickAgent} onClose=${() => setAt(null)} />`}
      <div class="row">
        <button id="send-reply" class="primary" type="button" disabled=${busy} onClick=${() => submit('reply')}>${t('composer.send')}</button>
        <button id="send-note" type="button" disabled=${busy} onClick=${() => submit('note')}>${t('composer.note')}</button>
        <label class="attach"><span class="attach-button">${t('composer.attach')}</span>
          <input id="attach-file" ref=${files} type="file" multiple aria-label=${t('composer.attach_label')}
            onChange=${(e) => setChosen([...e.target.files].map((f) => f.name))} />
          <span class="attach-names">${!chosen.length ? t('composer.no_files')
            : chosen.length === 1 ? chosen[0] : t('composer.files', { n: chosen.length })}</span></label>
        <p id="view-error" class="error" role="alert">${state.error}</p>
        <span class="hint">${t('composer.hint')}</span>
      </div>
    </div>`;
}

function Tags({ ticket }) {
  const input = useRef(null);
  async function add(e) {
    e.preventDefault();
    const tag = input.current.value.trim();
    if (!tag) return;
    if (await act({ type: 'tags', ticket_id: ticket.id, add: [tag] })) input.current.value = '';
  }
  return html`
    <div id="ticket-tags" class="tags" aria-label=${t('ticket.tags')}>
      ${(ticket.tags || []).map((tag) => html`
        <span class="tag" key=${tag}>${tag}<button type="button" class="tag-remove" aria-label=${t('ticket.tag_remove', { tag })}
          onClick=${() => act({ type: 'tags', ticket_id: ticket.id, remove: [tag] })}>×</button></span>`)}
      <form class="tag-form" onSubmit=${add}>
        <input id="tag-input" ref=${input} maxlength="100" placeholder=${t('ticket.tag_add')} aria-label=${t('ticket.tag_add')} />
      </form>
    </div>`;
}

function TransferPicker({ ticket }) {
  const [query, setQuery] = useState('');
  const box = useRef(null);
  useEffect(() => { loadPeople(); const el = box.current && box.current.querySelector('input'); if (el) el.focus(); }, []);
  const q = query.trim().toLowerCase();
  const match = (name) => !q || (name || '').toLowerCase().includes(q);
  const agents = [...state.agents.values()].filter((a) => a.active !== false && a.id !== ticket.assignee_id
    && match(a.name || a.email)).sort((a, b) => (a.status === 'online' ? 0 : 1) - (b.status === 'online' ? 0 : 1)
    || (a.name || '').localeCompare(b.name || '', lang()));
  const groups = [...state.groups.values()].filter((g) => match(g.name));
  async function pick(target) {
    if (await act({ type: 'transfer', ticket_id: ticket.id, ...target })) { state.overlay = null; changed(); }
  }
  return html`
    <div id="transfer-picker" class="popover" ref=${box} role="dialog" aria-label=${t('ticket.transfer_to')}
      onKeyDown=${(e) => { if (e.key === 'Escape') { state.overlay = null; changed(); } }}>
      <input id="transfer-filter" value=${query} onInput=${(e) => setQuery(e.target.value)}
        placeholder=${t('ticket.transfer_filter')} aria-label=${t('ticket.transfer_filter')} />
      <h3>${t('ticket.transfer_agents')}</h3>
      <ul class="picks">
        ${agents.map((a) => html`
          <li key=${`a${a.id}`}><button type="button" class="pick-agent" data-id=${a.id} onClick=${() => pick({ agent_id: a.id })}>
            <span class=${`dot presence-${a.status}`} title=${t(`presence.${a.status === 'away' ? 'away' : 'online'}`)}></span>
            <span class="pick-name">${a.name || a.email}</span>
            <span class="pick-load">${t('ticket.load', { load: a.load, capacity: a.capacity })}</span>
          </button></li>`)}
      </ul>
      <h3>${t('ticket.transfer_groups')}</h3>
      <ul class="picks">
        ${groups.map((g) => html`
          <li key=${`g${g.id}`}><button type="button" class="pick-group" data-id=${g.id} onClick=${() => pick({ group_id: g.id })}>
            <span class="pick-name">${g.name}</span></button></li>`)}
      </ul>
      ${!agents.length && !groups.length && html`<p class="empty">${t('ticket.transfer_none')}</p>`}
    </div>`;
}

function LiveLine({ ticket }) {
  const name = (by) => (by.type === 'customer' ? customerName(ticket) : by.name || agentName(by.id));
  const typingNow = liveOn(ticket.id, 'typing').map((x) => name(x.by));
  const viewers = liveOn(ticket.id, 'viewing').map((x) => name(x.by));
  if (!typingNow.length && !viewers.length) return null;
  return html`
    <div id="live-line" class="live-line" aria-live="polite">
      ${typingNow.length > 0 && html`<span id="typing-line" class="typing">${t('ticket.typing', { names: typingNow.join(', ') })}</span>`}
      ${viewers.length > 0 && html`<span id="viewing-line" class="viewing">${t('ticket.viewing', { names: viewers.join(', ') })}</span>`}
    </div>`;
}

// ---- the customer panel: who this is, on every channel, and their earlier tickets ---------------
function CustomerPanel({ ticket }) {
  const [customer, setCustomer] = useState(null);
  const [history, setHistory] = useState(null);
  const [editing, setEditing] = useState(false);
  const name = useRef(null);
  const email = useRef(null);
  const id = ticket.customer_id;
  async function load() {
    try {
      const [c, h] = await Promise.all([api('GET', `/api/v1/customers/${id}`),
        api('GET', `/api/v1/customers/${id}/tickets?limit=20`)]);
      setCustomer(c.customer);
      setHistory(h.tickets || []);
    } catch (err) { state.error = err.message; changed(); }
  }
  useEffect(() => { setCustomer(null); setHistory(null); setEditing(false); if (id != null) load(); }, [id]);
  async function save(e) {
    e.preventDefault();
    const changes = { name: name.current.value.trim() || null, email: email.current.value.trim() || null };
    try {
      setCustomer((await api('PATCH', `/api/v1/customers/${id}`, changes)).customer);
      setEditing(false);
    } catch (err) { state.error = err.message; changed(); }
  }
  if (id == null) return null;
  const c = customer || ticket.customer || {};
  const earlier = (history || []).filter((x) => x.id !== ticket.id);
  async function mergeTicket(other) {
    state.error = '';
    try {
      const done = await api('POST', `/api/v1/tickets/${ticket.id}/merge`, { other_ticket_id: other.id });
      if (done.ticket) upsertTicket(done.ticket);
      if (done.other) upsertTicket(done.other);
      await loadThread(ticket.id);
      load();
    } catch (err) { state.error = err.message; changed(); }
  }
  return html`
    <aside id="customer-panel" aria-label=${t('customer.title')}>
      <h3>${t('customer.title')}</h3>
      ${editing ? html`
        <form id="customer-form" onSubmit=${save}>
          <label>${t('customer.name')}<input id="customer-name" ref=${name} value=${c.name || ''} maxlength="200" /></label>
          <label>${t('customer.email')}<input id="customer-email" ref=${email} type="email" value=${c.email || ''} /></label>
          <div class="row"><button class="primary" type="submit" id="customer-save">${t('customer.save')}</button>
            <button type="button" onClick=${() => setEditing(false)}>${t('customer.cancel')}</button></div>
        </form>` : html`
        <div class="customer-card">
          <div id="customer-display-name" class="customer-name">${c.name || t('ticket.customer')}</div>
          ${c.email && html`<div class="customer-email">${c.email}</div>`}
          <button type="button" id="customer-edit" class="link" onClick=${() => setEditing(true)}>${t('customer.edit')}</button>
        </div>`}
      ${customer && customer.tags && customer.tags.length > 0 && html`
        <div class="tags">${customer.tags.map((tag) => html`<span class="tag" key=${tag}>${tag}</span>`)}</div>`}
      ${customer && html`
        <h4>${t('customer.identities')}</h4>
        <ul id="customer-identities" class="plain">
          ${(customer.identities || []).map((i) => html`<li key=${`${i.channel}:${i.external_id}`}>
            <span class="badge">${channelName(i.channel)}</span> <span class="ident">${i.external_id}</span></li>`)}
        </ul>`}
      ${customer && !customer.merged_into_id && html`<${CustomerMerge} customer=${customer} onDone=${load} />`}
      <h4>${t('customer.history')}</h4>
      ${history == null ? html`<p class="empty">${t('ticket.loading')}</p>` : !earlier.length
        ? html`<p class="empty">${t('customer.no_history')}</p>` : html`
        <ul id="customer-history" class="plain">
          ${earlier.map((x) => html`<li key=${x.id}>
            <button type="button" class="history-item" disabled=${!x.can_open} data-id=${x.id}
              onClick=${() => { upsertTicket(x); select(x.id); }}>
              <span class="history-title">${ticketTitle(x)}</span>
              <span class="ticket-meta"><span class=${`badge status-${x.status}`}>${t(`status.${x.status}`)}</span>
                <span>${channelName(x.channel)}</span><span class="time">${when(x.created_at)}</span></span>
            </button>
            ${x.can_open && x.status !== 'closed' && !x.merged_into_id && ticket.status !== 'closed' && html`
              <button type="button" class="link merge-ticket" data-id=${x.id} onClick=${() => mergeTicket(x)}>
                ${t('merge.ticket_into_this')}</button>`}</li>`)}
        </ul>`}
    </aside>`;
}

// Another customer (found by search: the same person on WeChat and web chat) merged into this one,
// with an undo for as long as it can be undone exactly.
function CustomerMerge({ customer, onDone }) {
  const [q, setQ] = useState('');
  const [found, setFound] = useState([]);
  const [merges, setMerges] = useState([]);
  async function loadMerges() {
    try { setMerges((await api('GET', `/api/v1/customers/${customer.id}/merges`)).merges || []); } catch { setMerges([]); }
  }
  useEffect(() => { loadMerges(); }, [customer.id]);
  useEffect(() => {
    if (!q.trim()) { setFound([]); return undefined; }
    const timer = setTimeout(async () => {
      try {
        const results = (await api('GET', `/api/v1/search?q=${encodeURIComponent(q)}&limit=20`)).results || [];
        const byId = new Map();
        for (const r of results) if (r.customer && r.customer.id !== customer.id) byId.set(r.customer.id, r.customer);
        setFound([...byId.values()]);
      } catch { setFound([]); }
    }, 250);
    return () => clearTimeout(timer);
  }, [q]);
  async function merge(other) {
    state.error = '';
    try {
      await api('POST', `/api/v1/customers/${customer.id}/merge`, { other_id: other.id });
      setQ('');
      await loadMerges();
      onDone();
    } catch (err) { state.error = err.message; changed(); }
  }
  async function undo(m) {
    state.error = '';
    try {
      await api('POST', `/api/v1/customers/merges/${m.id}/undo`);
      await loadMerges();
      onDone();
    } catch (err) { state.error = err.message; changed(); }
  }
  const undoable = merges.filter((m) => !m.undone_at && m.customer_id === customer.id);
  return html`
    <div id="customer-merge">
      <h4>${t('merge.customer_title')}</h4>
      <input id="merge-search" type="search" value=${q} onInput=${(e) => setQ(e.target.value)}
        placeholder=${t('merge.customer_find')} aria-label=${t('merge.customer_find')} />
      ${found.length > 0 && html`<ul class="plain merge-found">${found.map((o) => html`<li key=${o.id}>
        <span class="pick-name">${o.name || t('ticket.customer')}</span>
        <button type="button" class="merge-customer" data-id=${o.id} onClick=${() => merge(o)}>${t('merge.customer_do')}</button></li>`)}</ul>`}
      ${undoable.map((m) => html`<div class="merged" key=${m.id}>
        ${t('merge.customer_done', { name: (m.other && (m.other.name || m.other.email)) || t('ticket.customer') })}
        <button type="button" class="link merge-undo" data-id=${m.id} onClick=${() => undo(m)}>${t('merge.undo')}</button></div>`)}
    </div>`;
}

// ---- canned replies: "/" in the composer, a search, the text filled in for the ticket ------------
function CannedPicker({ query, onPick, onClose }) {
  const [items, setItems] = useState([]);
  const [at, setAt] = useState(0);
  useEffect(() => {
    let live = true;
    api('GET', `/api/v1/canned-replies?limit=20&q=${encodeURIComponent(`/${query}`)}`)
      .then((d) => { if (live) { setItems(d.canned_replies || []); setAt(0); } })
      .catch(() => { if (live) setItems([]); });
    return () => { live = false; };
  }, [query]);
  useEffect(() => {
    function key(e) {
      if (!items.length) return;
      if (e.key === 'ArrowDown') { e.preventDefault(); setAt((at + 1) % items.length); }
      else if (e.key === 'ArrowUp') { e.preventDefault(); setAt((at + items.length - 1) % items.length); }
      else if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) { e.preventDefault(); e.stopPropagation(); onPick(items[at]); }
      else if (e.key === 'Escape') onClose();
    }
    document.addEventListener('keydown', key, true);
    return () => document.removeEventListener('keydown', key, true);
  }, [items, at]);
  return html`
    <ul id="canned-picker" class="popover canned" role="listbox" aria-label=${t('canned.title')}>
      ${!items.length && html`<li class="empty">${t('canned.none')}</li>`}
      ${items.map((c, i) => html`<li key=${c.id} role="option" aria-selected=${i === at}
        class=${`canned-item${i === at ? ' active' : ''}`} onMouseDown=${(e) => { e.preventDefault(); onPick(c); }}>
        <span class="shortcut">/${c.shortcut}</span> <span class="canned-title">${c.title}</span>
        <span class="canned-scope">${t(`canned.${c.scope}`)}</span></li>`)}
    </ul>`;
}

function AgentPicker({ query, onPick, onClose }) {
  const me = state.agent && state.agent.id;
  const q = query.toLowerCase();
  const agents = [...state.agents.values()].filter((a) => a.active !== false && a.id !== me
    && ((a.name || '').toLowerCase().includes(q) || (a.email || '').toLowerCase().includes(q))).slice(0, 8);
  const [idx, setIdx] = useState(0);
  useEffect(() => {
    function key(e) {
      if (!agents.length) return;
      if (e.key === 'ArrowDown') { e.preventDefault(); setIdx((idx + 1) % agents.length); }
      else if (e.key === 'ArrowUp') { e.preventDefault(); setIdx((idx + agents.length - 1) % agents.length); }
      else if (e.key === 'Enter' && !e.ctrlKey && !e.metaKey) { e.preventDefault(); e.stopPropagation(); onPick(agents[idx]); }
      else if (e.key === 'Escape') onClose();
    }
    document.addEventListener('keydown', key, true);
    return () => document.removeEventListener('keydown', key, true);
  }, [query, idx, agents.length]);
  if (!agents.length) return null;
  return html`
    <ul id="mention-picker" class="popover canned" role="listbox" aria-label=${t('mentions.pick')}>
      ${agents.map((a, i) => html`<li key=${a.id} role="option" aria-selected=${i === idx}
        class=${`canned-item pick-mention${i === idx ? ' active' : ''}`} onMouseDown=${(e) => { e.preventDefault(); onPick(a); }}>
        <span class=${`dot presence-${a.status}`}></span><span class="canned-title">${a.name || a.email}</span></li>`)}
    </ul>`;
}

function MentionsMenu() {
  const [open, setOpen] = useState(false);
  async function openIt(m) {
    setOpen(false);
    try { await api('POST', '/api/v1/me/mentions/read', { ids: [m.id] }); } catch { /* read later */ }
    if (m.ticket) upsertTicket(m.ticket);
    select(m.ticket_id);
    loadMentions();
  }
  const unread = state.mentions.unread;
  return html`
    <div class="transfer">
      <button id="mentions-open" type="button" aria-expanded=${open} onClick=${() => { setOpen(!open); if (!open) loadMentions(); }}>
        @ ${unread > 0 && html`<span id="mentions-unread" class="count">${unread}</span>`}</button>
      ${open && html`
        <div id="mentions-list" class="popover" role="dialog" aria-label=${t('mentions.title')}>
          <h3>${t('mentions.title')}</h3>
          ${!state.mentions.list.length && html`<p class="empty">${t('mentions.none')}</p>`}
          <ul class="picks">${state.mentions.list.map((m) => html`<li key=${m.id}>
            <button type="button" class=${`mention-item${m.read_at ? '' : ' unread'}`} onClick=${() => openIt(m)}>
              <span class="pick-name">${(m.author && m.author.name) || ''}: ${plainMentions(m.text || '')}</span>
              <span class="pick-load">${when(m.created_at)}</span></button></li>`)}</ul>
        </div>`}
    </div>`;
}

function Macros({ ticket }) {
  if (!state.macros.length) return null;
  async function apply(e) {
    const id = e.target.value;
    e.target.value = '';
    if (!id) return;
    state.error = '';
    try {
      const done = await api('POST', `/api/v1/tickets/${ticket.id}/macros/${id}`);
      if (done.ticket) upsertTicket(done.ticket);
      for (const m of done.messages || []) addMessage(m);
    } catch (err) { state.error = err.message; }
    changed();
  }
  return html`
    <label>${t('macros.label')}
      <select id="ticket-macro" value="" onChange=${apply}>
        <option value="">${t('macros.choose')}</option>
        ${state.macros.map((m) => html`<option value=${String(m.id)}>${m.name}</option>`)}
      </select></label>`;
}

function TicketView() {
  const ticket = state.viewTicket;
  if (state.selectedId == null || !ticket) {
    return html`<main id="ticket-view"><p id="ticket-empty">${t('ticket.select')}</p></main>`;
  }
  const me = state.agent && state.agent.id;
  const c = ticket.customer || {};
  const assignee = ticket.assignee_id == null ? t('ticket.unassigned')
    : ticket.assignee_id === me ? t('ticket.assigned_you') : t('ticket.assigned_to', { name: agentName(ticket.assignee_id) });
  const info = [`#${ticket.id}`, [c.name, c.email && `<${c.email}>`].filter(Boolean).join(' '), channelName(ticket.channel),
    assignee, ticket.group_id != null && t('ticket.group', { name: groupName(ticket.group_id) })].filter(Boolean).join(' · ');
  return html`
    <main id="ticket-view">
      <div id="ticket-detail">
        <div id="ticket-head">
          <button id="back" type="button" class="back" onClick=${back}>‹ ${t('ticket.back')}</button>
          <div class="title">
            <h2 id="ticket-subject">${ticketTitle(ticket)}</h2>
            <div id="ticket-info">${info} <${Deadline} ticket=${ticket} id="ticket-sla" /></div>
            <${Tags} ticket=${ticket} />
          </div>
          <div class="controls">
            <div class="transfer">
              <button id="transfer-open" type="button" aria-expanded=${state.overlay === 'transfer'}
                onClick=${() => { state.overlay = state.overlay === 'transfer' ? null : 'transfer'; changed(); }}>${t('ticket.transfer')}</button>
              ${state.overlay === 'transfer' && html`<${TransferPicker} ticket=${ticket} />`}
            </div>
            <${Macros} ticket=${ticket} />
            ${ticket.customer_id != null && html`<button id="customer-toggle" type="button" aria-expanded=${state.panel}
              aria-controls="customer-panel" onClick=${() => { state.panel = !state.panel; changed(); }}>${t('customer.title')}</button>`}
            <label>${t('ticket.priority')}
              <select id="ticket-priority" value=${ticket.priority}
                onChange=${(e) => act({ type: 'priority', ticket_id: ticket.id, priority: e.target.value })}>
                ${PRIORITIES.map((p) => html`<option value=${p}>${t(`priority.${p}`)}</option>`)}
              </select></label>
            <label>${t('ticket.status')}
              <select id="ticket-status" value=${ticket.status}
                onChange=${(e) => act({ type: 'status', ticket_id: ticket.id, status: e.target.value })}>
                ${STATUSES.map((s) => html`<option value=${s}>${t(`status.${s}`)}</option>`)}
              </select></label>
          </div>
        </div>
        <div class=${`ticket-body${state.panel ? ' show-panel' : ''}`}>
          <div class="conversation">
            <${Thread} />
            <${LiveLine} ticket=${ticket} />
            <${Composer} />
          </div>
          <${CustomerPanel} ticket=${ticket} />
        </div>
      </div>
    </main>`;
}

const SHORTCUTS = [['j', 'shortcuts.next'], ['k', 'shortcuts.prev'], ['r', 'shortcuts.reply'],
  ['1–5', 'shortcuts.views'], ['/', 'shortcuts.search'], ['e', 'shortcuts.solve'], ['t', 'shortcuts.transfer'], ['?', 'shortcuts.help'],
  ['Esc', 'shortcuts.close']];

function Shortcuts() {
  return html`
    <div id="shortcuts" class="overlay" role="dialog" aria-modal="true" aria-label=${t('shortcuts.title')}
      onClick=${(e) => { if (e.target.id === 'shortcuts') { state.overlay = null; changed(); } }}>
      <div class="sheet">
        <h2>${t('shortcuts.title')}</h2>
        <dl>${SHORTCUTS.map(([k, label]) => html`<dt><kbd>${k}</kbd></dt><dd>${t(label)}</dd>`)}</dl>
        <button type="button" id="shortcuts-close" onClick=${() => { state.overlay = null; changed(); }}>${t('shortcuts.close')}</button>
      </div>
    </div>`;
}

function onShortcut(e) {
  if (!state.token || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'Escape') {
    if (state.overlay) state.overlay = null;
    else if (state.panel) state.panel = false;
    changed();
    return;
  }
  if (state.page) return; // the administration and reports pages have no ticket shortcuts
  const typing = e.target.closest && e.target.closest('input, textarea, select, [contenteditable]');
  if (typing) return;
  const items = listed();
  const at = items.findIndex((x) => x.id === state.selectedId);
  const ticket = state.viewTicket;
  if (e.key === 'j' || e.key === 'k') {
    const next = items[Math.max(0, Math.min(items.length - 1, at + (e.key === 'j' ? 1 : -1)))];
    if (next) select(next.id);
  } else if (e.key === 'r' && ticket) {
    const el = document.getElementById('reply-text');
    if (el) { e.preventDefault(); el.focus(); }
  } else if (/^[1-5]$/.test(e.key)) {
    const v = views()[Number(e.key) - 1];
    if (v) { state.view = v; loadView(); changed(); }
  } else if (e.key === 'e' && ticket) {
    act({ type: 'status', ticket_id: ticket.id, status: 'solved' });
  } else if (e.key === 't' && ticket) {
    state.overlay = 'transfer';
    changed();
  } else if (e.key === '/') {
    const el = document.getElementById('search');
    if (el) el.focus();
  } else if (e.key === '?') {
    state.overlay = 'shortcuts';
    changed();
  } else {
    return;
  }
  e.preventDefault();
}

function App() {
  const [, setTick] = useState(0);
  useEffect(() => { redraw = () => setTick((n) => n + 1); }, []);
  const unread = state.unread.size;
  document.title = `${unread ? `(${unread}) ` : ''}${t('app.title')}`;
  if (!state.token) return html`<${Login} />`;
  if (state.page === 'reports' && seesAll()) {
    return html`
      <div id="app" class="show-admin">
        <${Header} />
        <${ReportsPage} api=${api} blobUrl=${blobUrl} html=${html} t=${t} lang=${lang()}
          agents=${[...state.agents.values()]} groups=${[...state.groups.values()]}
          onClose=${() => { state.page = null; changed(); }} />
      </div>`;
  }
  if (state.page && state.page !== 'reports' && isAdmin()) {
    return html`
      <div id="app" class="show-admin">
        <${Header} />
        <${AdminPage} api=${api} html=${html} t=${t} tab=${state.page}
          onTab=${(x) => { state.page = x; changed(); }} onClose=${() => { state.page = null; changed(); }} />
      </div>`;
  }
  return html`
    <div id="app" class=${state.selectedId != null ? 'show-ticket' : 'show-list'}>
      <${Header} />
      <${TicketList} />
      <${TicketView} />
      ${state.overlay === 'shortcuts' && html`<${Shortcuts} />`}
    </div>`;
}

// ---- start -----------------------------------------------------------------------------------------
document.addEventListener('keydown', onShortcut);
window.addEventListener('pagehide', () => { if (state.selectedId != null) viewing(state.selectedId, false); });
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.selectedId != null && state.unread.delete(state.selectedId)) { saveUnread(); changed(); }
});
await loadLang(preferredLang());
render(html`<${App} />`, document.getElementById('root'));
if (state.token) start(); // a bad or expired token comes back as unauthorized and shows the form
