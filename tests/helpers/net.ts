/** Socket helpers for tests. */

/**
 * A loopback port nothing listens on: bound on 127.0.0.1:0, then released. (Another process could
 * take it meanwhile; in a test run that is unlikely enough.)
 */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}
