/**
 * One line for every failure a command can meet, chosen by the error's tag (and its typed fields: `reason`,
 * errno `code`, AMQP reply `code`), never by matching message text.
 */
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"

/** The errno code (`EADDRINUSE`, `ENOENT`, ...) somewhere down a chain of `cause`s, if any. */
export const errnoCode = (error: unknown): string | undefined => {
  let current: unknown = error
  for (let depth = 0; depth < 8 && Predicate.isObject(current); depth++) {
    if ("code" in current && typeof current.code === "string" && /^E[A-Z]+$/.test(current.code)) return current.code
    current = "cause" in current ? current.cause : undefined
  }
  return undefined
}

const errnoText: Record<string, string> = {
  EADDRINUSE: "the address is in use",
  EADDRNOTAVAIL: "no such local address",
  ENOTFOUND: "the host name does not resolve",
  EAI_AGAIN: "the host name does not resolve",
  EACCES: "permission denied",
  ENOENT: "no such file",
  EISDIR: "is a directory",
  ECONNREFUSED: "connection refused",
  ETIMEDOUT: "timed out"
}

/** `what: <errno text> (CODE)`, or `what: <message>` without an errno code. */
export const withErrno = (what: string, cause: unknown): string => {
  const code = errnoCode(cause)
  if (code !== undefined) return `${what}: ${errnoText[code] ?? "system error"} (${code})`
  return `${what}: ${messageOf(cause)}`
}

const messageOf = (cause: unknown): string => {
  if (ParseResult.isParseError(cause)) return parseErrorLine(cause)
  if (cause instanceof Error) return firstLine(cause.message)
  if (Predicate.isObject(cause) && "message" in cause && typeof cause.message === "string") {
    return firstLine(cause.message)
  }
  return firstLine(String(cause))
}

const firstLine = (text: string): string => text.split("\n")[0] ?? text

/** The first issue of a Schema error as `path: message`. */
const parseErrorLine = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) return "invalid value"
  return first.path.length === 0 ? first.message : `${first.path.join(".")}: ${first.message}`
}

const tagged = (error: unknown): error is { readonly _tag: string } & Record<string, unknown> =>
  Predicate.isObject(error) && "_tag" in error && typeof error._tag === "string"

/** One line saying what went wrong (not yet redacted: the caller prints through `redact`). */
export const describeError = (error: unknown): string => {
  if (!tagged(error)) return messageOf(error)
  const reason = typeof error["reason"] === "string" ? error["reason"] : undefined
  switch (error._tag) {
    case "CliFailure":
      return String(error["message"])
    case "PbServerError":
      switch (reason) {
        case "Open":
          return withErrno("cannot listen", error["cause"])
        case "Tls":
          return `the TLS key or certificate was rejected: ${messageOf(error["cause"])}`
        default:
          return `invalid server option: ${messageOf(error["cause"])}`
      }
    case "ServeError":
      return withErrno("cannot open the metrics port", error["cause"])
    case "SnapshotError":
      switch (reason) {
        case "Corrupt":
          return `the KV snapshot ${String(error["path"])} is damaged: ${messageOf(error["cause"])}`
        case "Read":
          return withErrno(`cannot read the KV snapshot ${String(error["path"])}`, error["cause"])
        default:
          return withErrno(`cannot write the KV snapshot ${String(error["path"])}`, error["cause"])
      }
    case "MemoryLimitExceeded":
      return `the KV snapshot does not fit in --kv-max-bytes (${String(error["limitBytes"])} bytes)`
    case "UsersFileError":
      return `the users file cannot be used: ${messageOf(error["cause"] ?? error["message"])}`
    case "ParseError":
      return `invalid value: ${messageOf(error)}`
    case "ConfigError":
      return `invalid environment setting: ${String(error)}`
    case "AmqpError":
      return reason === "Config"
        ? `invalid connection settings: ${firstLine(String(error["message"]))}`
        : `${firstLine(String(error["message"]))}`
    case "RpcRemoteError":
      return `the server answered with an error: ${messageOf(error)}`
    case "RpcTimeout":
    case "RpcUnroutable":
    case "RpcNacked":
    case "RpcChannelLost":
    case "RpcClientStopped":
    case "RpcConfigError":
    case "RpcChannelSetupFailed":
      return messageOf(error)
    default:
      return messageOf(error)
  }
}
