/**
 * An in-memory `OAuthClientProvider` for the MCP SDK client that signs in the way a person would
 * in a browser, against oidc-provider's development login and consent pages.
 *
 * The SDK's flow (client/auth.js): on 401 it discovers the protected resource metadata and the
 * authorization server, registers (DCR) when it has no client information, then calls
 * `redirectToAuthorization()` and throws `UnauthorizedError`. Here that call signs in at once and
 * keeps the code; the caller then hands it to `transport.finishAuth()` and connects again, as an
 * app does when its callback URL is hit.
 */
// Type-only imports name the `.d.ts` path: `client/auth.js` would type-check as `any` (the SDK's
// `./*` export maps types to `*.d.ts`).
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth";
import { loginWithDevInteractions } from "./oidc_login.ts";

/** Options for {@linkcode DevLoginOAuthProvider}. */
export interface DevLoginOAuthProviderOptions {
  /** Who signs in (becomes `sub`). */
  login: string;
  /** Where the authorization server sends the code; never actually requested. */
  redirectUrl: string;
  /** Pre-registered client id; when absent the SDK registers one (DCR). */
  clientId?: string;
}

/** Records what the SDK asked of it, for assertions. */
export class DevLoginOAuthProvider implements OAuthClientProvider {
  readonly #options: DevLoginOAuthProviderOptions;
  #client?: OAuthClientInformationMixed;
  #tokens?: OAuthTokens;
  #verifier?: string;
  #state?: string;
  #code?: string;
  /** Every authorization URL the SDK built (its query shows `resource`, `scope`, PKCE ...). */
  readonly authorizationUrls: URL[] = [];
  /** Whether the SDK registered a client through DCR. */
  registered = false;

  constructor(options: DevLoginOAuthProviderOptions) {
    this.#options = options;
    if (options.clientId) this.#client = { client_id: options.clientId };
  }

  get redirectUrl(): string {
    return this.#options.redirectUrl;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: "mcp-gate e2e test",
      redirect_uris: [this.#options.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  state(): string {
    this.#state = crypto.randomUUID();
    return this.#state;
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.#client;
  }

  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.registered = true;
    this.#client = info;
  }

  tokens(): OAuthTokens | undefined {
    return this.#tokens;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.#tokens = tokens;
  }

  saveCodeVerifier(verifier: string): void {
    this.#verifier = verifier;
  }

  codeVerifier(): string {
    if (!this.#verifier) throw new Error("No PKCE code verifier was saved");
    return this.#verifier;
  }

  /** Plays the browser: signs in and keeps the code from the redirect back. */
  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    this.authorizationUrls.push(authorizationUrl);
    const back = await loginWithDevInteractions(authorizationUrl, { login: this.#options.login });
    const error = back.searchParams.get("error");
    if (error) {
      throw new Error(
        `Authorization failed with "${error}": ${back.searchParams.get("error_description")}`,
      );
    }
    if (back.searchParams.get("state") !== this.#state) {
      throw new Error(`Authorization response "state" does not match the request`);
    }
    const code = back.searchParams.get("code");
    if (!code) throw new Error(`Authorization response has no "code"`);
    this.#code = code;
  }

  /** The code from the last sign-in, once. */
  takeAuthorizationCode(): string {
    const code = this.#code;
    if (!code) throw new Error("No authorization code: the SDK never redirected to authorization");
    this.#code = undefined;
    return code;
  }
}
