// The client side of the error envelope: {ok: false, error: {...}} as an exception.
//
// Its own codes besides the server's: `timeout` (no reply in time) and `disconnected` (the
// connection closed before the reply, so the server may or may not have acted). A code a
// newer server adds is passed through as it is.

/** No reply within the call's timeout. */
export const TIMEOUT = "timeout";
/** The connection was not up, or closed before the reply. */
export const DISCONNECTED = "disconnected";

/** The error body of an envelope (docs/events.md). */
export interface ErrorBody {
  code: string;
  message: string;
  details?: unknown;
  retry_after?: number;
}

/** A refused or failed call: `code`, `message`, `details`, `retryAfter` (seconds). */
export class RealtimeError extends Error {
  readonly code: string;
  readonly details: unknown;
  readonly retryAfter: number | null;

  constructor(code: string, message: string, details?: unknown, retryAfter?: number | null) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter ?? null;
  }

  /** From an envelope's `error` (or a refused handshake's data); tolerant of junk. */
  static from(error: unknown): RealtimeError {
    if (!error || typeof error !== "object") {
      return new RealtimeError("internal", `malformed error: ${String(error)}`.slice(0, 200));
    }
    const e = error as Record<string, unknown>;
    const retry = typeof e.retry_after === "number" ? e.retry_after : null;
    return new RealtimeError(String(e.code ?? "internal"), String(e.message ?? ""), e.details,
      retry);
  }

  /** The envelope's `error` shape again (what the server would have sent). */
  toJSON(): ErrorBody {
    const body: ErrorBody = { code: this.code, message: this.message };
    if (this.details !== undefined) body.details = this.details;
    if (this.retryAfter !== null) body.retry_after = this.retryAfter;
    return body;
  }
}

/** The `data` of a success envelope; throws RealtimeError for anything else. */
export function unwrap<T>(event: string, reply: unknown): T {
  if (reply && typeof reply === "object") {
    const r = reply as Record<string, unknown>;
    if (r.ok === true) return r.data as T;
    if (r.ok === false) throw RealtimeError.from(r.error);
  }
  throw new RealtimeError("internal", `${event}: not an envelope`);
}
