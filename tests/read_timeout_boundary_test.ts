/**
 * READ_TIMEOUT's promise (docs/contract.md §1: 408, "the upstream request aborted before the
 * body's end") against an upstream that reads slowly. The client sends its whole Content-Length
 * body at once; the upstream reads the head, pauses past READ_TIMEOUT, then reads on. The gate may
 * hold the body's last chunk in a write blocked on the upstream when the deadline fires: the
 * upstream must still never get every declared byte (a complete request it may act on) while the
 * client is told 408 and may retry. Body sizes straddle the write buffer's edge. (A guard written
 * by the second review; it held.)
 */
import assert from "node:assert/strict";
import { gateEnv, ready, RESOURCE } from "./helpers/rig.ts";
import { startGate } from "./helpers/gate.ts";
import { startTestIssuer } from "./helpers/issuer.ts";
import { startRawUpstream } from "./helpers/upstream.ts";

const enc = new TextEncoder();

Deno.test("READ_TIMEOUT's 408 never leaves the upstream with the complete Content-Length body", async () => {
  const SIZES = [2 * 1024 * 1024, 4063232 + 32768, 4194304];
  const got: number[] = [];
  let bodyLength = 0;
  await using upstream = startRawUpstream(async (conn) => {
    const buf = new Uint8Array(65536);
    let text = "";
    let body = 0;
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder("latin1").decode(buf.subarray(0, n));
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        body = text.length - end - 4;
        break;
      }
    }
    await new Promise((r) => setTimeout(r, 2500));
    while (body < bodyLength) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      body += n;
    }
    got.push(body);
    if (body >= bodyLength) {
      await conn.write(enc.encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")).catch(
        () => {},
      );
    }
  });
  await using issuer = await startTestIssuer({ path: "/realms/test", audience: RESOURCE });
  await using gate = await startGate(
    gateEnv(issuer, upstream, { READ_TIMEOUT: "1s", MAX_REQUEST_BODY: "16MiB" }),
  );
  await ready(gate);
  const token = await issuer.mint({ scope: "mcp:tools" });
  const results: string[] = [];
  for (const size of SIZES) {
    bodyLength = size;
    got.length = 0;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: gate.port });
    const head = `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${token}\r\n` +
      `content-type: application/json\r\ncontent-length: ${size}\r\nconnection: close\r\n\r\n`;
    const body = new Uint8Array(size).fill(0x20);
    const sending = (async () => {
      await conn.write(enc.encode(head));
      let off = 0;
      while (off < body.length) off += await conn.write(body.subarray(off));
    })().catch(() => {});
    let text = "";
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
      if (/\r\n\r\n/.test(text) && /\}|ok$/.test(text)) break;
    }
    try {
      conn.close();
    } catch { /* closed */ }
    await sending;
    for (let i = 0; i < 60 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const status = Number(text.split(" ")[1]);
    results.push(`${size}: client ${status}, upstream read ${got[0]} of ${size}`);
  }

  const bad = results.filter((r) => / 408, /.test(r) && /read (\d+) of \1/.test(r));
  assert.deepEqual(bad, [], results.join("\n"));
});
