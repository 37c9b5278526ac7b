/**
 * Plays the browser for oidc-provider's development login and consent pages (`devInteractions`):
 * follows the authorization request's redirects by hand, keeps the cookies, submits the login form
 * (any username) and the consent form, and returns the final redirect to the client's
 * `redirect_uri` (which carries `code` and `state`).
 */

/** Options for {@linkcode loginWithDevInteractions}. */
export interface DevLoginOptions {
  /** The username to sign in as; it becomes the token's `sub`. */
  login: string;
  /** Stop after this many requests; default 12. */
  maxSteps?: number;
}

/**
 * Drives an authorization request through oidc-provider's dev interactions.
 * @returns the redirect to the client, e.g. `http://127.0.0.1:1/callback?code=...&state=...`.
 * @throws {Error} on an unexpected status or page, or when the redirect never leaves the server.
 */
export async function loginWithDevInteractions(
  authorizationUrl: URL,
  options: DevLoginOptions,
): Promise<URL> {
  const origin = authorizationUrl.origin;
  const cookies = new Map<string, string>();
  let url = authorizationUrl;
  let init: RequestInit = { method: "GET" };
  for (let step = 0; step < (options.maxSteps ?? 12); step++) {
    const headers = new Headers(init.headers);
    if (cookies.size) {
      headers.set("cookie", [...cookies].map(([k, v]) => `${k}=${v}`).join("; "));
    }
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    storeCookies(cookies, res.headers.getSetCookie());
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      const next = new URL(res.headers.get("location") ?? "", url);
      if (next.origin !== origin) return next;
      url = next;
      init = { method: "GET" };
      continue;
    }
    const page = await res.text();
    if (res.status !== 200) {
      throw new Error(
        `Unexpected status ${res.status} from "${url.pathname}": ${page.slice(0, 200)}`,
      );
    }
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1];
    const prompt = /name="prompt" value="([^"]+)"/.exec(page)?.[1];
    if (!action || !prompt) {
      throw new Error(`No interaction form at "${url.pathname}": ${page.slice(0, 200)}`);
    }
    const form = new URLSearchParams({ prompt });
    if (prompt === "login") {
      form.set("login", options.login);
      form.set("password", "any");
    }
    url = new URL(action.replaceAll("&amp;", "&"), url);
    init = {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
    };
  }
  throw new Error(`The authorization request did not redirect back within the step limit`);
}

function storeCookies(jar: Map<string, string>, setCookies: string[]): void {
  for (const line of setCookies) {
    const [pair, ...attrs] = line.split(";");
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*expires=.*1970/i.test(a)) ||
      attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
    if (expired || value === "") jar.delete(name);
    else jar.set(name, value);
  }
}
