/**
 * The HTTP/1.1 wire layer: the upstream client and the byte-level rules it needs (RFC 9112).
 * This file is the module's only public face; nothing outside `src/http1/` imports its other
 * files (`deno task ok` checks it with scripts/check_imports.ts).
 */
export {
  Http1Client,
  type Http1ClientOptions,
  Http1Error,
  type Http1ErrorKind,
  type Http1ExchangeResult,
  type Http1Outcome,
  type Http1Request,
  type Http1Response,
} from "./client.ts";
export {
  contentLengthOf,
  Http1ProtocolError,
  isToken,
  parseResponseHead,
  type ResponseHead,
  splitTokens,
} from "./parse.ts";
export {
  encodeHead,
  fieldLine,
  type HeadPart,
  Http1HeadError,
  isFieldValue,
  requestLine,
  toByteString,
} from "./head.ts";
