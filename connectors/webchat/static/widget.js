/*! channelhub web chat widget — embed with one tag:
 *   <script src="https://<tenant host>/webchat/widget.js" data-lang="zh-CN" async></script>
 * Optional attributes: data-lang (the widget's language: "en" or "zh-CN"; the browser's when left
 * out, and the visitor can switch), data-name and data-email (a signed-in shopper, sent in "hello").
 *
 * This loader is a classic script, so it works in any page; it imports the widget's modules from the
 * server that served it (the tenant is that Host): app.mjs with Preact + htm from /vendor, all
 * served with CORS so a page of another site may import them. The widget then talks to the same
 * server: /webchat/ws, HTTP when that fails.
 */
(() => {
  'use strict';
  if (window.ChannelHubWidget) return; // included twice: keep the first instance

  const SCRIPT_PATH = '/webchat/widget.js';
  // document.currentScript is null for async scripts in some cases, so also look for our tag.
  const script = (document.currentScript && document.currentScript.src)
    ? document.currentScript
    : [...document.scripts].find((s) => s.src && s.src.split(/[?#]/)[0].endsWith(SCRIPT_PATH));
  const src = script ? script.src : location.href;
  const data = script ? script.dataset : {};

  // Calls made before the widget has loaded are made once it has.
  const queue = [];
  const later = (name) => (...args) => { queue.push([name, args]); return null; };
  window.ChannelHubWidget = { open: later('open'), close: later('close'), send: later('send'),
                              setLanguage: later('setLanguage') };

  import(new URL('/webchat/app.mjs', src).href)
    .then((app) => app.start({ origin: new URL(src).origin, lang: data.lang, name: data.name, email: data.email,
                               queue }))
    .catch((error) => { console.error('channelhub widget could not start:', error); });
})();
