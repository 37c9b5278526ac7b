/**
 * Throwaway TLS material made with the openssl CLI. Tests that need it are skipped where openssl
 * is missing ({@linkcode HAVE_OPENSSL}).
 */

/** Whether `openssl` runs on this machine. */
export const HAVE_OPENSSL: boolean = await new Deno.Command("openssl", {
  args: ["version"],
  stdout: "null",
  stderr: "null",
}).output().then((out) => out.success, () => false);

/** Options for {@linkcode selfSignedCert}. */
export interface SelfSignedOptions {
  /** Directory the two PEM files are written to. */
  dir: string;
  /** File name stem: `<name>.crt` and `<name>.key`. Default "gate". */
  name?: string;
  /** Subject CN. Default "127.0.0.1". */
  commonName?: string;
  /** The subjectAltName extension. Default "IP:127.0.0.1,DNS:localhost". */
  subjectAltName?: string;
  /**
   * Leave openssl's default basic constraints, CA:TRUE (what a plain `openssl req -x509` gives,
   * and what rustls refuses as a server's own certificate). Default false: CA:FALSE.
   */
  ca?: boolean;
}

/**
 * A self-signed end-entity (CA:FALSE, which rustls requires of a server's own certificate; CA:TRUE
 * with `ca`) P-256 certificate valid for a day; returns the paths of the certificate and key files.
 */
export async function selfSignedCert(
  options: SelfSignedOptions,
): Promise<{ cert: string; key: string }> {
  const name = options.name ?? "gate";
  const cert = `${options.dir}/${name}.crt`;
  const key = `${options.dir}/${name}.key`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "1",
      "-subj",
      `/CN=${options.commonName ?? "127.0.0.1"}`,
      "-addext",
      `subjectAltName=${options.subjectAltName ?? "IP:127.0.0.1,DNS:localhost"}`,
      ...(options.ca ? [] : ["-addext", "basicConstraints=critical,CA:FALSE"]),
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
  return { cert, key };
}
