/**
 * Stand-in for A0's /js/AlpineStore.js on the widget test page, written for the test.
 * createStore(name, state) registers an Alpine store now or at alpine:init, like A0's, and returns an
 * object that reads and writes through to that store.
 */
export function createStore(name, initialState) {
  const register = () => globalThis.Alpine.store(name, initialState);
  if (globalThis.Alpine) {
    register();
  } else {
    document.addEventListener("alpine:init", register);
  }

  const current = () => globalThis.Alpine?.store(name) ?? initialState;
  return new Proxy(initialState, {
    get(_target, property) {
      return current()[property];
    },
    set(_target, property, value) {
      current()[property] = value;
      return true;
    },
  });
}
