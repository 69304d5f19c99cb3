/**
 * Stand-in for A0's webui extension loader (js/extensions.js and js/components.js), written for the
 * widget test page. It follows the same steps A0 v1.7 takes, so the component file is tested as A0
 * loads it:
 *   1. For each <x-extension id="SLOT">, POST /api/load_webui_extensions {extension_point, filters}
 *      and put one <x-component path="/PATH"> per returned file into the slot.
 *   2. For each <x-component>, fetch the HTML and parse it with DOMParser; append its <style>
 *      elements; import its module scripts (inline ones from a Blob URL, after rewriting root-relative
 *      import specifiers to absolute URLs, because a Blob module cannot resolve "/..." itself); then
 *      append the body's nodes, which Alpine's mutation observer initialises.
 * When every component is in place, body gets data-fixture-ready="1" (or data-fixture-error).
 */

const HTML_FILTERS = ["*.html", "*.htm", "*.xhtml"];

async function listExtensions(slot) {
  const response = await fetch("/api/load_webui_extensions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ extension_point: slot, filters: HTML_FILTERS }),
  });
  if (!response.ok) throw new Error(`listing extensions of ${slot} failed: HTTP ${response.status}`);
  const body = await response.json();
  return body.extensions.map((path) => (path.startsWith("/") ? path : "/" + path));
}

function absoluteImports(source) {
  return source.replace(/(import\s+[^'"]+\s+from\s+|import\s*)(["'])(\/[^"']*)\2/g, (_match, head, quote, path) => {
    return `${head}${quote}${new URL(path, location.origin).href}${quote}`;
  });
}

async function importModuleScript(script) {
  if (script.src) {
    await import(new URL(script.getAttribute("src"), location.origin).href);
    return;
  }
  const blob = new Blob([absoluteImports(script.textContent)], { type: "text/javascript" });
  const url = URL.createObjectURL(blob);
  try {
    await import(url);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function loadComponent(element) {
  const path = element.getAttribute("path");
  const response = await fetch(path);
  if (!response.ok) throw new Error(`loading component ${path} failed: HTTP ${response.status}`);
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");

  for (const style of doc.querySelectorAll("style")) {
    element.appendChild(style.cloneNode(true));
  }
  const modules = [...doc.querySelectorAll("script")].filter((script) => script.type === "module");
  await Promise.all(modules.map(importModuleScript));

  for (const node of [...doc.body.childNodes]) {
    if (node.nodeName === "SCRIPT" || node.nodeName === "STYLE") continue;
    element.appendChild(document.importNode(node, true));
  }
}

async function loadSlots() {
  for (const slot of document.querySelectorAll("x-extension")) {
    const paths = await listExtensions(slot.id);
    slot.replaceChildren(
      ...paths.map((path) => {
        const component = document.createElement("x-component");
        component.setAttribute("path", path);
        return component;
      }),
    );
  }
  await Promise.all([...document.querySelectorAll("x-component")].map(loadComponent));
}

async function start() {
  try {
    await loadSlots();
    await new Promise((resolve) => globalThis.Alpine.nextTick(resolve));
    document.body.dataset.fixtureReady = "1";
  } catch (error) {
    document.body.dataset.fixtureError = String(error);
    throw error;
  }
}

start();
