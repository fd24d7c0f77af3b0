// Where the page keeps the bearer token. It arrives in the URL fragment (/usage#token=...), which browsers
// never send to a server, or is typed into the sign-in form. It is kept in sessionStorage (this tab only,
// gone when the tab closes) and the fragment is removed from the address bar at once, so it does not stay in
// the history or show on a shared screen.

const STORAGE_KEY = "meterline.token";

/** Take a token from the URL fragment, if there is one, into sessionStorage; then the current token. */
export function currentToken() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    saveToken(fromFragment);
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(STORAGE_KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(STORAGE_KEY, token.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(STORAGE_KEY);
}
