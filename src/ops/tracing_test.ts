import assert from "node:assert/strict";
import { context, type ContextManager, ROOT_CONTEXT, type Span, trace } from "@opentelemetry/api";
import { annotateAuth, SPAN_ATTRIBUTES } from "./tracing.ts";

/** A span that only records its attributes; the API's other methods are never called here. */
function recordingSpan(): { span: Span; attributes: Record<string, unknown> } {
  const attributes: Record<string, unknown> = {};
  const span = {
    setAttribute(key: string, value: unknown) {
      attributes[key] = value;
      return span;
    },
  } as unknown as Span;
  return { span, attributes };
}

/**
 * A synchronous context manager (what Deno's OpenTelemetry provides when it is on), registered
 * for the duration of `fn` only.
 */
function withContextManager(fn: () => void): void {
  const stack = [ROOT_CONTEXT];
  const manager: ContextManager = {
    active: () => stack[stack.length - 1],
    with(ctx, f, thisArg, ...args) {
      stack.push(ctx);
      try {
        return f.call(thisArg, ...args);
      } finally {
        stack.pop();
      }
    },
    bind: (_ctx, target) => target,
    enable: () => manager,
    disable: () => manager,
  };
  assert.ok(context.setGlobalContextManager(manager));
  try {
    fn();
  } finally {
    context.disable();
  }
}

Deno.test("annotateAuth() sets outcome and subject on the active span of an accepted request", () => {
  const { span, attributes } = recordingSpan();
  withContextManager(() => {
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => {
      annotateAuth({ outcome: "ok", sub: "alice" });
    });
  });
  assert.deepEqual(attributes, {
    [SPAN_ATTRIBUTES.outcome]: "ok",
    [SPAN_ATTRIBUTES.subject]: "alice",
  });
});

Deno.test("annotateAuth() sets outcome and reason on the active span of a rejected request", () => {
  const { span, attributes } = recordingSpan();
  withContextManager(() => {
    context.with(trace.setSpan(ROOT_CONTEXT, span), () => {
      annotateAuth({ outcome: "invalid_token", reason: "audience" });
    });
  });
  assert.deepEqual(attributes, {
    [SPAN_ATTRIBUTES.outcome]: "invalid_token",
    [SPAN_ATTRIBUTES.reason]: "audience",
  });
});

Deno.test("annotateAuth() throws nothing when no span is active (OpenTelemetry off)", () => {
  assert.equal(trace.getActiveSpan(), undefined);
  assert.doesNotThrow(() => annotateAuth({ outcome: "invalid_token", reason: "expired" }));
  withContextManager(() => {
    assert.equal(trace.getActiveSpan(), undefined);
    assert.doesNotThrow(() => annotateAuth({ outcome: "ok", sub: "alice" }));
  });
});
