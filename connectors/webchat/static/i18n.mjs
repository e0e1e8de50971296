// The widget's words: message catalogues in locales/<lang>.json on the hub, one key per string,
// none in code. The language is the visitor's own pick (the switch in the panel, kept in
// localStorage) if they made one, else the site's (data-lang on the script tag), else the
// browser's (zh-* -> Simplified Chinese). Placeholders are written {name}.

export const LANGS = { en: 'English', 'zh-CN': '简体中文' };
const DEFAULT = 'en';

let catalogue = {};
let current = DEFAULT;

/** The catalogue language that serves a language tag, or null. */
export function supported(tag) {
  if (!tag || typeof tag !== 'string') return null;
  if (LANGS[tag]) return tag;
  if (/^zh\b/i.test(tag)) return 'zh-CN';
  if (/^en\b/i.test(tag)) return 'en';
  return null;
}

export function preferredLang({ stored, site }) {
  const own = supported(stored);
  if (own) return own;
  const theirs = supported(site);
  if (theirs) return theirs;
  for (const tag of navigator.languages || [navigator.language || DEFAULT]) {
    const lang = supported(tag);
    if (lang) return lang;
  }
  return DEFAULT;
}

export async function loadLang(origin, lang) {
  const res = await fetch(`${origin}/webchat/locales/${encodeURIComponent(lang)}.json`);
  if (!res.ok) throw new Error(`no catalogue for ${lang}`);
  catalogue = await res.json();
  current = lang;
}

export const lang = () => current;

export function t(key, params) {
  let text = catalogue[key];
  if (text == null) {
    console.warn(`channelhub widget: no text for "${key}" in ${current}`);
    text = key;
  }
  return params ? text.replace(/\{(\w+)\}/g, (whole, name) => (params[name] == null ? whole : String(params[name])))
    : text;
}

export const has = (key) => catalogue[key] != null;

/** The tenant's own words ({"en": ..., "zh-CN": ...}) in the widget's language: the exact tag,
 * else one of the same base language, else none (the catalogue's text is shown instead). */
export function pick(words) {
  if (!words || typeof words !== 'object') return '';
  const exact = words[current];
  if (typeof exact === 'string' && exact.trim()) return exact;
  const base = current.split('-')[0].toLowerCase();
  for (const [tag, text] of Object.entries(words)) {
    if (tag.split('-')[0].toLowerCase() === base && typeof text === 'string' && text.trim()) return text;
  }
  return '';
}
