// The console's words: message catalogues in locales/<lang>.json, one key per string, none in code.
// The language follows the browser (zh-* -> Simplified Chinese) until the agent picks one, which is
// kept in localStorage. Placeholders are written {name} and filled from the params.

export const LANGS = { en: 'English', 'zh-CN': '简体中文' };
const LANG_KEY = 'channelhub.console.lang';

let catalogue = {};
let current = 'en';

export function preferredLang() {
  let stored = null;
  try { stored = localStorage.getItem(LANG_KEY); } catch { /* private mode */ }
  if (stored && LANGS[stored]) return stored;
  for (const tag of navigator.languages || [navigator.language || 'en']) {
    if (/^zh\b/i.test(tag)) return 'zh-CN';
    if (/^en\b/i.test(tag)) return 'en';
  }
  return 'en';
}

export async function loadLang(lang, { remember = false } = {}) {
  const res = await fetch(`/console/locales/${encodeURIComponent(lang)}.json`);
  if (!res.ok) throw new Error(`no catalogue for ${lang}`);
  catalogue = await res.json();
  current = lang;
  document.documentElement.lang = lang;
  if (remember) { try { localStorage.setItem(LANG_KEY, lang); } catch { /* memory only */ } }
}

export const lang = () => current;

export function t(key, params) {
  let text = catalogue[key];
  if (text == null) {
    console.warn(`channelhub console: no text for "${key}" in ${current}`);
    text = key;
  }
  return params ? text.replace(/\{(\w+)\}/g, (whole, name) => (params[name] == null ? whole : String(params[name])))
    : text;
}

// A channel's name in the agent's language (an unknown one, from a newer hub, as it is).
export const channelName = (kind) => {
  const text = kind ? t(`channel.${kind}`) : '';
  return text === `channel.${kind}` ? kind : text;
};
