// channelhub web chat widget: Preact + htm (vendored, served by the hub under /vendor), rendered in a
// shadow root so the host page's styles and ours never meet. Every word comes from the catalogues
// (i18n.mjs); all server and visitor text is rendered as text (Preact escapes it). The conversation
// itself (socket, retries, fallback, history) is chat.mjs; this is what the visitor sees and does:
// the launcher and its badge, the panel, pictures and files with previews and progress, the offline
// notice in the tenant's words, the language switch.
//
// Loaded by the one script tag's loader (/webchat/widget.js), which passes what the tag says.

import { h, render } from '/vendor/preact.mjs';
import htm from '/vendor/htm.mjs';
import { Chat, store, uuid } from './chat.mjs';
import { LANGS, has, lang, loadLang, pick, preferredLang, supported, t } from './i18n.mjs';

const html = htm.bind(h);

const MAX_FILES = 10; // per message (core.attachments.MAX_PER_MESSAGE)
const IMAGE = /^image\/(png|jpeg|gif|webp)$/;
// What a file without a type in the browser (File.type "") most likely is, by its extension.
const BY_EXTENSION = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  heic: 'image/heic', heif: 'image/heif', pdf: 'application/pdf', txt: 'text/plain', csv: 'text/csv',
  doc: 'application/msword', docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xls: 'application/vnd.ms-excel', xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  ppt: 'application/vnd.ms-powerpoint',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
  odt: 'application/vnd.oasis.opendocument.text', ods: 'application/vnd.oasis.opendocument.spreadsheet',
  odp: 'application/vnd.oasis.opendocument.presentation',
};
const ACCEPT = ['image/*', ...Object.keys(BY_EXTENSION).map((ext) => `.${ext}`)].join(',');
const BLUE = '#2563eb';
// Latin first (so Latin text keeps its own font), then the common CJK faces of each platform.
const FONTS = 'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"PingFang SC","Hiragino Sans GB",'
  + '"Microsoft YaHei","Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei",sans-serif';
const CSS = `
/* The host element itself is in the page: nothing of the page's styles may show on it (the page's
   own !important rules lose to these, a shadow root's !important rules win). */
:host{all:initial!important}
.chw-root{position:fixed;right:20px;bottom:20px;z-index:2147483000;font:14px/1.45 ${FONTS};color:#1f2328;text-align:left;-webkit-font-smoothing:antialiased}
*,*::before,*::after{box-sizing:border-box;margin:0;font:inherit;letter-spacing:normal;text-transform:none}
[hidden]{display:none!important}
button{cursor:pointer}
.chw-launcher{position:relative;width:56px;height:56px;padding:0;border:0;border-radius:50%;background:${BLUE};color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;margin-left:auto}
.chw-launcher svg{width:28px;height:28px;fill:currentColor}
.chw-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#dc2626;color:#fff;font-size:12px;line-height:20px;text-align:center}
.chw-panel{position:absolute;right:0;bottom:72px;width:360px;max-width:calc(100vw - 40px);height:520px;max-height:calc(100vh - 112px);display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);overflow:hidden}
.chw-header{display:flex;align-items:center;gap:8px;padding:10px 12px 10px 14px;background:${BLUE};color:#fff}
.chw-title{flex:1;font-weight:600}
.chw-lang{max-width:96px;padding:2px 4px;border:1px solid rgba(255,255,255,.5);border-radius:6px;background:transparent;color:#fff;font-size:12px}
.chw-lang option{color:#1f2328}
.chw-close{padding:0 4px;border:0;background:none;color:inherit;font-size:22px;line-height:1}
.chw-status{padding:4px 14px;font-size:12px;color:#57606a;background:#f6f8fa;border-bottom:1px solid #eaeef2}
.chw-status[data-state=online]{color:#1a7f37}
.chw-status[data-state=error]{color:#cf222e}
.chw-offline{padding:8px 14px;font-size:13px;color:#7d4e00;background:#fff8c5;border-bottom:1px solid #eed888;white-space:pre-wrap;overflow-wrap:anywhere}
.chw-messages{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px}
.chw-survey{align-self:stretch;padding:10px 12px;border:1px solid #d0d7de;border-radius:10px;background:#fff;font-size:13px}
.chw-survey-title{font-weight:600;margin-bottom:6px}
.chw-stars{display:flex;gap:4px;margin:6px 0}
.chw-star{border:none;background:none;font-size:24px;line-height:1;cursor:pointer;color:#d0d7de;padding:0 2px}
.chw-star[aria-pressed=true],.chw-star.chw-lit{color:#f5a623}
.chw-survey textarea{width:100%;box-sizing:border-box;font:inherit;margin:4px 0;resize:vertical}
.chw-survey-send{padding:4px 14px;border:none;border-radius:6px;background:#0969da;color:#fff;cursor:pointer}
.chw-survey-error{color:#cf222e;margin-top:4px}
.chw-greeting{align-self:stretch;padding:8px 11px;border-radius:10px;background:#f6f8fa;color:#57606a;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere}
.chw-msg{max-width:80%;padding:8px 11px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere}
.chw-inbound{align-self:flex-end;background:${BLUE};color:#fff;border-bottom-right-radius:4px}
.chw-outbound{align-self:flex-start;background:#eef1f4;border-bottom-left-radius:4px}
.chw-outbound[data-author]::before{content:attr(data-author);display:block;margin-bottom:2px;font-size:11px;font-weight:600;color:#57606a}
.chw-file{display:block;margin-top:4px;color:inherit;text-decoration:underline}
.chw-thumb{display:block;min-width:64px;min-height:64px;max-width:200px;max-height:160px;margin-bottom:2px;border-radius:8px;object-fit:contain;background:rgba(255,255,255,.4);image-rendering:auto}
.chw-pending{opacity:.6}
.chw-failed{background:#cf222e;cursor:help}
.chw-typing{padding:2px 14px 4px;font-size:12px;color:#57606a;font-style:italic}
.chw-drafts{display:flex;flex-direction:column;gap:6px;max-height:150px;overflow-y:auto;padding:8px 10px 0;list-style:none}
.chw-draft{display:flex;align-items:center;gap:8px;padding:6px;border:1px solid #d0d7de;border-radius:8px;background:#f6f8fa}
.chw-draft[data-state=error]{border-color:#cf222e;background:#ffebe9}
.chw-draft-thumb,.chw-draft-icon{flex:none;width:40px;height:40px;border-radius:6px;object-fit:cover}
.chw-draft-icon{display:flex;align-items:center;justify-content:center;background:#d0d7de;color:#57606a;font-size:10px;font-weight:600;overflow:hidden}
.chw-draft-meta{flex:1;min-width:0;display:flex;flex-direction:column;font-size:12px}
.chw-draft-name{overflow:hidden;white-space:nowrap;text-overflow:ellipsis;color:#1f2328}
.chw-draft-size{color:#57606a}
.chw-draft-error{color:#cf222e}
.chw-progress{width:100%;height:4px;margin-top:3px;accent-color:${BLUE}}
.chw-draft-remove{flex:none;padding:0 4px;border:0;background:none;color:#57606a;font-size:18px;line-height:1}
.chw-compose{display:flex;align-items:flex-end;gap:6px;padding:10px;border-top:1px solid #eaeef2}
.chw-attach{flex:none;width:36px;height:40px;padding:0;border:1px solid #d0d7de;border-radius:8px;background:#fff;color:#57606a;display:flex;align-items:center;justify-content:center}
.chw-attach svg{width:20px;height:20px;fill:currentColor}
.chw-input{flex:1;height:40px;max-height:120px;padding:9px 10px;resize:none;border:1px solid #d0d7de;border-radius:8px;outline:none;background:#fff;color:#1f2328}
.chw-input:focus,.chw-attach:focus-visible{border-color:${BLUE}}
.chw-send{height:40px;padding:0 14px;border:0;border-radius:8px;background:${BLUE};color:#fff;font-weight:600}
.chw-send:disabled{opacity:.5;cursor:progress}
.chw-drop{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;padding:24px;background:rgba(37,99,235,.9);color:#fff;font-size:16px;font-weight:600;text-align:center;pointer-events:none}
`;
const CHAT_ICON = html`<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>`;
const CLIP_ICON = html`<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5H9v9a3 3 0 0 0 6 0V5a4.5 4.5 0 0 0-9 0v11.5a6 6 0 0 0 12 0v-10z"/></svg>`;

// ---- state: one object, changed in place, and a redraw after each burst of changes ------------
const ui = {
  open: false,
  unread: 0,
  text: '',
  drafts: [],      // files picked, dropped or pasted for the next message (see addFiles)
  dragging: false,
  toBottom: false, // scroll the conversation to its end at the next redraw
  rating: 0,       // the survey card's chosen stars, and its comment
  comment: '',
};
let chat = null;
let origin = '';
let langKey = '';
let mount = null;
const els = { list: null, input: null, launcher: null, file: null };

let queued = false;
function changed() {
  if (queued) return;
  queued = true;
  setTimeout(() => { queued = false; redraw(); }, 0);
}

function redraw() {
  const list = els.list;
  // Stay at the end if the visitor was there (a new message scrolls into view), else keep still.
  const stick = ui.toBottom || !list || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  render(html`<${Widget} />`, mount);
  if (stick && els.list) els.list.scrollTop = els.list.scrollHeight;
  ui.toBottom = false;
}

// ---- words -----------------------------------------------------------------------------------
function errorText(error) {
  if (!error) return '';
  if (error.code && has(`error.${error.code}`)) return t(`error.${error.code}`, { max: maxSize() });
  if (error.message) return error.message;
  return error.status ? t('error.status', { status: error.status }) : t('error.generic');
}

function formatNumber(n) {
  return new Intl.NumberFormat(lang(), { maximumFractionDigits: 1 }).format(n);
}

function formatSize(bytes) {
  if (bytes < 1024) return t('size.bytes', { n: formatNumber(bytes) });
  if (bytes < 1024 * 1024) return t('size.kb', { n: formatNumber(bytes / 1024) });
  return t('size.mb', { n: formatNumber(bytes / (1024 * 1024)) });
}

const maxSize = () => formatSize(chat && chat.uploads ? chat.uploads.max_bytes : 5 * 1024 * 1024);

async function setLanguage(wanted, { remember = true } = {}) {
  const to = supported(wanted);
  if (!to) return;
  await loadLang(origin, to);
  if (remember) store.set(langKey, to);
  redraw();
}

// ---- the panel ---------------------------------------------------------------------------------
function open() {
  ui.open = true;
  ui.unread = 0;
  ui.toBottom = true;
  redraw();
  if (els.input) els.input.focus();
}

function close() {
  ui.open = false;
  redraw();
}

function submit() {
  if (uploading()) return; // the button says so; Enter waits too
  const done = ui.drafts.filter((d) => d.state === 'done');
  const id = chat.send(ui.text, done.map((d) => d.stored.id), done.map((d) => d.stored));
  if (id) {
    ui.text = '';
    for (const d of ui.drafts) forget(d);
    ui.drafts = [];
    ui.toBottom = true;
  }
  chat.typing('paused');
  redraw();
  if (els.input) els.input.focus();
}

// ---- files: picked, dropped or pasted; checked, uploaded at once (with progress), sent by id ----
const uploading = () => ui.drafts.some((d) => d.state === 'waiting' || d.state === 'uploading');

function addFiles(files) {
  for (const file of files) {
    if (ui.drafts.length >= MAX_FILES) {
      chat.showError({ code: 'too_many_files' });
      break;
    }
    const extension = (file.name || '').split('.').pop().toLowerCase();
    const type = (file.type || BY_EXTENSION[extension] || 'application/octet-stream').toLowerCase();
    const d = { key: uuid(), file, name: file.name || t('upload.unnamed'), size: file.size, type,
                extension: extension.slice(0, 4).toUpperCase(), state: 'waiting', progress: 0, error: '',
                preview: IMAGE.test(type) ? URL.createObjectURL(file) : null, stored: null, xhr: null };
    // What the hub said it takes (in its welcome); the hub checks again either way.
    const limits = chat.uploads;
    if (!file.size) refuse(d, { code: 'empty_attachment' });
    else if (limits && !limits.types.includes(type)) refuse(d, { code: 'unsupported_type' });
    else if (limits && file.size > limits.max_bytes) refuse(d, { code: 'attachment_too_large' });
    ui.drafts.push(d);
    if (d.state === 'waiting') upload(d);
  }
  redraw();
}

function refuse(d, error) {
  d.state = 'error';
  d.error = errorText(error);
}

async function upload(d) {
  const visitorId = await chat.visitor(); // the file is this visitor's: wait for the hub's id
  if (!ui.drafts.includes(d)) return;     // removed meanwhile
  d.state = 'uploading';
  changed();
  const xhr = new XMLHttpRequest(); // (fetch tells nothing of an upload's progress)
  d.xhr = xhr;
  xhr.open('POST', `${origin}/webchat/attachments?visitor_id=${encodeURIComponent(visitorId)}`
    + `&name=${encodeURIComponent(d.name)}`);
  xhr.setRequestHeader('Content-Type', d.type);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) { d.progress = e.loaded / e.total; changed(); }
  };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: an error of the network's */ }
    if (xhr.status === 201 && body.attachment) {
      d.state = 'done';
      d.progress = 1;
      d.stored = body.attachment;
    } else {
      const error = body.error || {};
      refuse(d, { code: error.code, message: error.message, status: xhr.status });
    }
    changed();
  };
  xhr.onerror = () => { refuse(d, { code: 'upload_failed' }); changed(); };
  xhr.send(d.file);
}

function forget(d) {
  if (d.xhr && d.state === 'uploading') d.xhr.abort();
  if (d.preview) URL.revokeObjectURL(d.preview);
}

function removeDraft(d) {
  forget(d);
  ui.drafts = ui.drafts.filter((x) => x !== d);
  redraw();
  if (els.input) els.input.focus();
}

const hasFiles = (e) => e.dataTransfer && [...(e.dataTransfer.types || [])].includes('Files');

// ---- components --------------------------------------------------------------------------------
// A file's link: relative links are the hub's own (not the page's), and only http(s) is followed.
function safeHref(url) {
  if (typeof url !== 'string') return null;
  try {
    const href = new URL(url, origin);
    return href.protocol === 'https:' || href.protocol === 'http:' ? href.href : null;
  } catch {
    return null;
  }
}

function Files({ files }) {
  return (Array.isArray(files) ? files : []).map((f, i) => {
    const href = f && safeHref(f.url);
    if (!href) return null;
    const name = typeof f.name === 'string' && f.name ? f.name : t('message.attachment');
    const image = IMAGE.test(f.content_type || '');
    return html`<a key=${i} class=${image ? 'chw-file chw-image' : 'chw-file'} href=${href} target="_blank" rel="noopener noreferrer">${image && html`<img class="chw-thumb" src=${href} alt="" />`}<span class="chw-file-name">${name}</span></a>`;
  });
}

function Message({ m }) {
  const inbound = m.direction === 'inbound';
  const author = !inbound && m.author && typeof m.author.name === 'string' && m.author.name ? m.author.name : undefined;
  const title = m.created_at ? new Date(m.created_at).toLocaleString(lang()) : undefined;
  return html`<div class=${inbound ? 'chw-msg chw-inbound' : 'chw-msg chw-outbound'} data-id=${m.id} data-author=${author} title=${title}>${m.text || ''}<${Files} files=${m.attachments} /></div>`;
}

function Unconfirmed({ clientId, p }) {
  const cls = `chw-msg chw-inbound ${p.failed ? 'chw-failed' : 'chw-pending'}`;
  const title = p.failed ? t('message.not_sent', { reason: errorText(p.reason) }) : undefined;
  return html`<div class=${cls} data-client-id=${clientId} title=${title}>${p.text}<${Files} files=${p.files} /></div>`;
}

function Draft({ d }) {
  return html`<li class="chw-draft" data-state=${d.state}>
    ${d.preview ? html`<img class="chw-draft-thumb" src=${d.preview} alt="" />`
      : html`<span class="chw-draft-icon" aria-hidden="true">${d.extension}</span>`}
    <span class="chw-draft-meta">
      <span class="chw-draft-name" title=${d.name}>${d.name}</span>
      <span class="chw-draft-size">${formatSize(d.size)}</span>
      ${d.state === 'uploading' && html`<progress class="chw-progress" max="1" value=${d.progress} aria-label=${t('upload.progress', { name: d.name })} />`}
      ${d.state === 'error' && html`<span class="chw-draft-error" role="alert">${d.error}</span>`}
    </span>
    <button class="chw-draft-remove" type="button" aria-label=${t('upload.remove', { name: d.name })} title=${t('upload.remove', { name: d.name })} onClick=${() => removeDraft(d)}>×</button>
  </li>`;
}

function Survey({ s }) {
  if (s.state === 'done') {
    return html`<div id="chw-survey" class="chw-survey" role="status"><div class="chw-survey-title">${t('csat.thanks')}</div></div>`;
  }
  const pickStar = (n) => { ui.rating = n; s.error = null; redraw(); };
  const send = (e) => {
    e.preventDefault();
    if (!ui.rating) { s.error = { code: 'pick', message: t('csat.pick') }; redraw(); return; }
    chat.rate(ui.rating, ui.comment.trim());
  };
  return html`<form id="chw-survey" class="chw-survey" onSubmit=${send}>
    <div class="chw-survey-title">${t('csat.title')}</div>
    <div>${t('csat.ask')}</div>
    <div class="chw-stars" role="group" aria-label=${t('csat.title')}>
      ${[1, 2, 3, 4, 5].map((n) => html`<button key=${n} type="button" class=${`chw-star${n <= ui.rating ? ' chw-lit' : ''}`}
        data-value=${n} aria-pressed=${ui.rating === n ? 'true' : 'false'} aria-label=${t('csat.star', { n })}
        title=${t('csat.star', { n })} onClick=${() => pickStar(n)}>★</button>`)}
    </div>
    <textarea id="chw-survey-comment" rows="2" maxlength="2000" placeholder=${t('csat.comment')}
              aria-label=${t('csat.comment')} value=${ui.comment}
              onInput=${(e) => { ui.comment = e.currentTarget.value; }}></textarea>
    <button class="chw-survey-send" type="submit" disabled=${s.state === 'sending'}>${t('csat.send')}</button>
    ${s.error && html`<div class="chw-survey-error" role="alert">${s.error.code === 'pick' ? s.error.message : errorText(s.error)}</div>`}
  </form>`;
}

function Widget() {
  const status = chat.flash ? 'error' : chat.status;
  const statusText = chat.flash ? errorText(chat.flash) : t(`status.${chat.status}`);
  const offline = chat.agentsOnline === false;
  const greeting = pick(chat.words.greeting);
  const typingName = chat.agentTyping && chat.agentTyping.name;
  const busy = uploading();
  const onKeyDown = (e) => {
    // Enter sends, Shift+Enter is a newline; leave Enter alone while an IME is composing.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); submit(); }
  };
  const onInput = (e) => {
    ui.text = e.currentTarget.value;
    chat.typing(ui.text.trim() ? 'composing' : 'paused');
  };
  const onPaste = (e) => {
    const files = e.clipboardData ? [...e.clipboardData.files] : [];
    if (files.length) { e.preventDefault(); addFiles(files); }
  };
  const onDragOver = (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    if (!ui.dragging) { ui.dragging = true; redraw(); }
  };
  const onDragLeave = (e) => {
    if (e.relatedTarget && e.currentTarget.contains(e.relatedTarget)) return;
    ui.dragging = false;
    redraw();
  };
  const onDrop = (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    ui.dragging = false;
    addFiles([...e.dataTransfer.files]);
  };
  const onPick = (e) => {
    const files = [...(e.currentTarget.files || [])];
    e.currentTarget.value = ''; // the same file can be picked again
    addFiles(files);
  };
  return html`<div class="chw-root" lang=${lang()}>
    <div id="chw-panel" class="chw-panel" role="dialog" aria-label=${t('panel.title')} hidden=${!ui.open}
         onKeyDown=${(e) => { if (e.key === 'Escape') { close(); if (els.launcher) els.launcher.focus(); } }}
         onDragOver=${onDragOver} onDragLeave=${onDragLeave} onDrop=${onDrop}>
      <div class="chw-header">
        <span class="chw-title">${t('panel.title')}</span>
        <select id="chw-lang" class="chw-lang" aria-label=${t('panel.language')} value=${lang()}
                onChange=${(e) => setLanguage(e.currentTarget.value)}>
          ${Object.entries(LANGS).map(([code, name]) => html`<option key=${code} value=${code} lang=${code}>${name}</option>`)}
        </select>
        <button class="chw-close" type="button" aria-label=${t('panel.close')} title=${t('panel.close')} onClick=${close}>×</button>
      </div>
      <div id="chw-status" class="chw-status" role="status" data-state=${status}>${statusText}</div>
      ${offline && html`<div id="chw-offline" class="chw-offline" role="status">${pick(chat.words.offline_message) || t('offline.default')}</div>`}
      <div id="chw-messages" class="chw-messages" role="log" aria-live="polite" ref=${(el) => { els.list = el; }}>
        ${greeting && html`<div id="chw-greeting" class="chw-greeting">${greeting}</div>`}
        ${chat.confirmed().map((m) => html`<${Message} key=${`m${m.id}`} m=${m} />`)}
        ${[...chat.outbox].map(([cid, p]) => html`<${Unconfirmed} key=${`c${cid}`} clientId=${cid} p=${p} />`)}
        ${chat.survey && html`<${Survey} s=${chat.survey} />`}
      </div>
      <div id="chw-typing" class="chw-typing" aria-live="polite" hidden=${!chat.agentTyping}>${chat.agentTyping
        ? (typingName ? t('typing.named', { name: typingName }) : t('typing.someone')) : ''}</div>
      ${ui.drafts.length > 0 && html`<ul id="chw-drafts" class="chw-drafts" aria-label=${t('upload.list')}>
        ${ui.drafts.map((d) => html`<${Draft} key=${d.key} d=${d} />`)}</ul>`}
      <form class="chw-compose" onSubmit=${(e) => { e.preventDefault(); submit(); }}>
        <input id="chw-file" type="file" multiple accept=${ACCEPT} hidden onChange=${onPick}
               ref=${(el) => { els.file = el; }} />
        <button id="chw-attach" class="chw-attach" type="button" aria-label=${t('upload.attach')} title=${t('upload.attach')}
                onClick=${() => els.file && els.file.click()}>${CLIP_ICON}</button>
        <textarea id="chw-input" class="chw-input" rows="1" placeholder=${t('compose.placeholder')}
                  aria-label=${t('compose.label')} value=${ui.text} onInput=${onInput} onKeyDown=${onKeyDown}
                  onPaste=${onPaste} ref=${(el) => { els.input = el; }}></textarea>
        <button id="chw-send" class="chw-send" type="submit" disabled=${busy}
                title=${busy ? t('compose.wait_uploads') : undefined}>${t('compose.send')}</button>
      </form>
      ${ui.dragging && html`<div class="chw-drop">${t('upload.drop')}</div>`}
    </div>
    <button id="chw-launcher" class="chw-launcher" type="button" aria-label=${ui.open ? t('launcher.close') : t('launcher.open')}
            aria-controls="chw-panel" aria-expanded=${ui.open ? 'true' : 'false'}
            onClick=${() => (ui.open ? close() : open())} ref=${(el) => { els.launcher = el; }}>
      ${CHAT_ICON}
      ${ui.unread > 0 && html`<span class="chw-badge">${ui.unread}</span>`}
    </button>
  </div>`;
}

// ---- start -------------------------------------------------------------------------------------
const domReady = () => new Promise((resolve) => {
  if (document.body) resolve();
  else document.addEventListener('DOMContentLoaded', () => resolve(), { once: true });
});

/** Called by the loader with what the script tag says: {origin, lang, name, email, queue}. */
export async function start(options) {
  origin = options.origin;
  langKey = `channelhub.widget.lang:${origin}`;
  const wanted = preferredLang({ stored: store.get(langKey), site: options.lang });
  try {
    await loadLang(origin, wanted);
  } catch {
    await loadLang(origin, 'en');
  }
  const hello = {};
  if (options.name) hello.name = options.name;
  if (options.email) hello.email = options.email;
  chat = new Chat({
    origin, hello, language: lang, onChange: changed,
    onIncoming: () => { if (!ui.open) ui.unread += 1; },
  });
  await domReady();
  // A name of its own (not a div), so the page's element selectors do not reach even the host.
  const host = document.createElement('channelhub-widget');
  host.id = 'channelhub-widget';
  const shadow = host.attachShadow({ mode: 'open' });
  const style = document.createElement('style');
  style.textContent = CSS;
  mount = document.createElement('div');
  shadow.append(style, mount);
  document.body.appendChild(host);
  chat.start();
  redraw();
  if (location.hash === '#chat') open();
  window.addEventListener('hashchange', () => { if (location.hash === '#chat') open(); });

  const api = { open, close, send: (text) => { const id = chat.send(text); redraw(); return id; },
                setLanguage: (code) => setLanguage(code) };
  Object.assign(window.ChannelHubWidget, api);
  for (const [name, args] of options.queue.splice(0)) api[name](...args);
}
