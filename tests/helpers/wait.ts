/**
 * Bounded waits for tests: await an event, but fail with a message instead of hanging until the
 * runner's timeout when it never comes.
 */

/** Resolves or rejects as `promise` does, or rejects with `message` after `ms`; clears its timer. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
