/**
 * Error messages of PB services: riak's `{format, ...}` terms, their rendering to an `RpbErrorResp`'s `errmsg`,
 * and the typed failure a service reports.
 */
import * as Data from "effect/Data"
import * as NodeUtil from "node:util"

/**
 * A value to pretty-print into an error reply (riak's `{format, Term}` and `{format, Fmt, Args}`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Format {
  readonly _tag: "Format"
  /** A `node:util` `format` string (`%s`, `%d`, `%j`, `%o`), or `undefined` to inspect the single argument. */
  readonly format: string | undefined
  readonly args: ReadonlyArray<unknown>
}

/**
 * What becomes the `errmsg` of an `RpbErrorResp`: text and bytes are sent verbatim, a `Format` is rendered first.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorMessage = string | Uint8Array | Format

/**
 * Pretty-prints `value` (riak's `{format, Term}`, which uses `~p`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const format = (value: unknown): Format => ({ _tag: "Format", format: undefined, args: [value] })

/**
 * Formats `args` into `template` with `node:util` `format` (riak's `{format, Fmt, Args}`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const formatWith = (template: string, ...args: ReadonlyArray<unknown>): Format => ({
  _tag: "Format",
  format: template,
  args
})

const encoder = new TextEncoder()

/**
 * Renders an `ErrorMessage` to the bytes of the `errmsg` field.
 *
 * @since 0.1.0
 * @category utils
 */
export const renderErrorMessage = (message: ErrorMessage): Uint8Array => {
  if (typeof message === "string") return encoder.encode(message)
  if (message instanceof Uint8Array) return message
  return encoder.encode(renderFormat(message))
}

const renderFormat = (message: Format): string =>
  message.format === undefined
    ? message.args.map((arg) => NodeUtil.inspect(arg, { depth: 8, breakLength: Infinity })).join(" ")
    : NodeUtil.format(message.format, ...message.args)

/**
 * Renders any reason as text: strings verbatim, bytes as UTF-8, anything else inspected.
 *
 * @since 0.1.0
 * @category utils
 */
export const renderReason = (reason: unknown): string => {
  if (typeof reason === "string") return reason
  if (reason instanceof Uint8Array) return new TextDecoder().decode(reason)
  if (isFormat(reason)) return renderFormat(reason)
  return NodeUtil.inspect(reason, { depth: 8, breakLength: Infinity })
}

const isFormat = (u: unknown): u is Format =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "Format" && "args" in u

/**
 * A failure a service reports from `process`/`processStream` (or from a reply `Stream`) without building an `Error`
 * result: it becomes an `RpbErrorResp` with `message`, the state stays as it was, the connection stays open.
 *
 * @since 0.1.0
 * @category errors
 */
export class PbServiceError extends Data.TaggedError("PbServiceError")<{ readonly error: ErrorMessage }> {
  override get message(): string {
    return renderReason(this.error)
  }
}
