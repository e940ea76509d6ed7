// The client-side layer put at the top of every proxied HTML page, before any of the page's own
// scripts run. Rewriting markup cannot see URLs that scripts build at run time: an absolute URL
// would go straight to the site (a leak the user never sees) and a root-relative one to the
// gateway's own root. The layer maps those into the proxy where the page hands them to the
// browser: fetch, XHR, WebSocket, EventSource, sendBeacon, window.open, history, the URL
// properties and attributes of elements, and HTML strings given to innerHTML and friends.
//
// It is plain browser JavaScript kept as text (the build has no DOM types). It is a convenience,
// not a boundary: a hostile page can undo it. What keeps a page away from the gateway is the
// sandbox (index.ts); this only keeps honest pages working and private.

/** The layer as an inline `<script>` element for a page proxied under `prefix`. */
export function clientLayerTag(prefix: string): string {
  return `<script data-switchyard-web-proxy>${layerSource(prefix)}</script>`;
}

function layerSource(prefix: string): string {
  return `(() => {
const PROXY_ROOT = new URL(${JSON.stringify(`${prefix}/`)}, location.href).href;
const GATEWAY = new URL(location.href).origin;
const SOCKET_ROOT = PROXY_ROOT.replace(/^http/, 'ws');
const LEFT_ALONE = /^\\s*(?:data|blob|javascript|about|mailto|tel|sms|urn):|^\\s*#|^\\s*$/i;
const unproxied = (href) => (href.startsWith(PROXY_ROOT) ? href.slice(PROXY_ROOT.length).replace(/^(https?|wss?):\\/(?!\\/)/i, '$1://') : undefined);
// What the page's URLs are relative to on the site itself: its <base> (already proxied) or its address.
const siteBase = () => unproxied(document.baseURI) ?? unproxied(location.href) ?? location.href;

function proxied(value) {
  if (value === null || value === undefined) return value;
  const raw = String(value);
  if (LEFT_ALONE.test(raw)) return value;
  let url;
  try {
    url = /^\\s*\\/\\//.test(raw) ? new URL(raw, siteBase()) : new URL(raw, document.baseURI);
  } catch {
    return value;
  }
  if (url.href.startsWith(PROXY_ROOT) || url.href.startsWith(SOCKET_ROOT)) return url.href;
  // Root-relative: meant for the site's root, not the gateway's.
  if (url.origin === GATEWAY) url = new URL(url.pathname + url.search + url.hash, siteBase());
  if (url.protocol === 'http:' || url.protocol === 'https:') return PROXY_ROOT + url.href;
  if (url.protocol === 'ws:' || url.protocol === 'wss:') return SOCKET_ROOT + url.href;
  return value;
}
const proxiedSrcset = (value) => String(value).split(/,(?=\\s*\\S)/).map((candidate) => candidate.replace(/^(\\s*)(\\S+)/, (_, lead, url) => lead + proxied(url))).join(',');
const proxiedCss = (value) => String(value).replace(/url\\(\\s*(['"]?)([^'")]*?)\\1\\s*\\)/gi, (_, q, url) => 'url(' + q + proxied(url) + q + ')');
const URL_ATTRIBUTES = new Set(['src', 'href', 'action', 'formaction', 'poster', 'data', 'background', 'xlink:href', 'ping']);
function proxiedAttribute(name, value) {
  const lower = String(name).toLowerCase();
  if (URL_ATTRIBUTES.has(lower)) return lower === 'ping' ? String(value).split(/\\s+/).map(proxied).join(' ') : proxied(value);
  if (lower === 'srcset' || lower === 'imagesrcset') return proxiedSrcset(value);
  if (lower === 'style') return proxiedCss(value);
  return value;
}
const ATTRIBUTE_IN_HTML = /(\\s(?:src|href|action|formaction|poster|data|background|xlink:href|srcset|imagesrcset|style)\\s*=\\s*)(?:"([^"]*)"|'([^']*)'|([^\\s>"']+))/gi;
const proxiedHtml = (html) => String(html).replace(ATTRIBUTE_IN_HTML, (_, lead, dq, sq, bare) => {
  const name = lead.trim().replace(/\\s*=$/, '');
  const value = proxiedAttribute(name, dq ?? sq ?? bare);
  return dq !== undefined || bare !== undefined ? lead + '"' + String(value).replace(/"/g, '&quot;') + '"' : lead + "'" + value + "'";
});

function wrapSetter(proto, property, map) {
  const own = proto && Object.getOwnPropertyDescriptor(proto, property);
  if (!own || !own.set) return;
  Object.defineProperty(proto, property, { ...own, set(value) { own.set.call(this, map(value)); } });
}
function wrapMethod(owner, name, wrap) {
  const original = owner && owner[name];
  if (typeof original === 'function') owner[name] = wrap(original);
}
function wrapConstructor(name) {
  const Original = self[name];
  if (typeof Original !== 'function') return;
  const Wrapped = function (url, ...rest) { return new Original(proxied(url instanceof URL ? url.href : url), ...rest); };
  Wrapped.prototype = Original.prototype;
  Object.setPrototypeOf(Wrapped, Original);
  self[name] = Wrapped;
}

wrapMethod(self, 'fetch', (original) => function (input, init) {
  if (input instanceof Request) input = new Request(proxied(input.url), input);
  else input = proxied(input instanceof URL ? input.href : input);
  return original.call(this, input, init);
});
wrapMethod(XMLHttpRequest.prototype, 'open', (original) => function (method, url, ...rest) {
  return original.call(this, method, proxied(url instanceof URL ? url.href : url), ...rest);
});
wrapMethod(navigator, 'sendBeacon', (original) => function (url, data) { return original.call(this, proxied(url), data); });
wrapMethod(self, 'open', (original) => function (url, ...rest) { return original.call(this, url === undefined ? url : proxied(url), ...rest); });
for (const name of ['pushState', 'replaceState']) {
  wrapMethod(History.prototype, name, (original) => function (state, title, url) {
    return url === undefined || url === null ? original.call(this, state, title) : original.call(this, state, title, proxied(url));
  });
}
wrapConstructor('WebSocket');
wrapConstructor('EventSource');

for (const [element, properties] of [
  ['HTMLAnchorElement', ['href', 'ping']], ['HTMLAreaElement', ['href']], ['HTMLLinkElement', ['href']], ['HTMLBaseElement', ['href']],
  ['HTMLImageElement', ['src', 'srcset']], ['HTMLSourceElement', ['src', 'srcset']], ['HTMLScriptElement', ['src']],
  ['HTMLIFrameElement', ['src']], ['HTMLFrameElement', ['src']], ['HTMLEmbedElement', ['src']], ['HTMLObjectElement', ['data']],
  ['HTMLMediaElement', ['src']], ['HTMLVideoElement', ['poster']], ['HTMLTrackElement', ['src']], ['HTMLInputElement', ['src', 'formAction']],
  ['HTMLFormElement', ['action']], ['HTMLButtonElement', ['formAction']],
]) {
  for (const property of properties) wrapSetter(self[element]?.prototype, property, (value) => proxiedAttribute(property, value));
}
wrapMethod(Element.prototype, 'setAttribute', (original) => function (name, value) { return original.call(this, name, proxiedAttribute(name, value)); });
wrapMethod(Element.prototype, 'setAttributeNS', (original) => function (ns, name, value) {
  const local = String(name).replace(/^xlink:/i, '');
  return original.call(this, ns, name, ns === 'http://www.w3.org/1999/xlink' && local === 'href' ? proxied(value) : proxiedAttribute(name, value));
});
wrapSetter(Element.prototype, 'innerHTML', proxiedHtml);
wrapSetter(Element.prototype, 'outerHTML', proxiedHtml);
wrapSetter(ShadowRoot.prototype, 'innerHTML', proxiedHtml);
wrapSetter(HTMLIFrameElement.prototype, 'srcdoc', proxiedHtml);
wrapMethod(Element.prototype, 'insertAdjacentHTML', (original) => function (where, html) { return original.call(this, where, proxiedHtml(html)); });
for (const name of ['write', 'writeln']) {
  wrapMethod(Document.prototype, name, (original) => function (...parts) { return original.call(this, proxiedHtml(parts.join(''))); });
}
wrapSetter(CSSStyleDeclaration.prototype, 'cssText', proxiedCss);
wrapMethod(CSSStyleDeclaration.prototype, 'setProperty', (original) => function (name, value, priority) { return original.call(this, name, proxiedCss(value), priority); });
for (const property of ['background', 'backgroundImage', 'listStyleImage', 'borderImageSource', 'content', 'cursor', 'mask', 'maskImage']) {
  wrapSetter(CSSStyleDeclaration.prototype, property, proxiedCss);
}
})();`;
}
