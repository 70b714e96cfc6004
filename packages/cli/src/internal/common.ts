/**
 * What every command shares: `--log-format`, `--verbose`, the one-line failure report and its exit codes, the
 * redaction of secrets in anything printed, and option parsers (durations, AMQP URLs).
 */
import * as Options from "@effect/cli/Options"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import { describeError } from "./describe.js"

/** Exit codes of every command (also printed by `--help`). */
export const ExitCode = { ok: 0, failure: 1, usage: 2 } as const

/** The command ends with this exit code; its report is already printed. */
export class CliExit extends Data.TaggedError("CliExit")<{ readonly code: number }> {}

/** A command failed for a reason it states itself (`message` is the line printed). */
export class CliFailure
  extends Data.TaggedError("CliFailure")<{ readonly message: string; readonly cause?: unknown }>
{}

/** Options every command takes. */
export const commonOptions = {
  logFormat: Options.text("log-format").pipe(
    Options.withPseudoName("text|json"),
    Options.withDescription("How log lines (on stderr) are written: text (logfmt) or json."),
    Options.mapEffect((text) =>
      text === "text" || text === "json"
        ? Effect.succeed<"text" | "json">(text)
        : Effect.fail(invalid(`--log-format: expected one of text, json, got "${text}"`))
    ),
    Options.withDefault("text" as const)
  ),
  verbose: Options.boolean("verbose").pipe(
    Options.withAlias("v"),
    Options.withDescription("On a failure, print the full cause (stack traces) instead of one line.")
  )
}

/** The values of `commonOptions`. */
export interface Common {
  readonly logFormat: "text" | "json"
  readonly verbose: boolean
}

/** Hides the password of every `scheme://user:password@host` in `text`. */
export const redact = (text: string): string => text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, "$1***@")

/** Writes `text` to stderr, redacted. */
export const printError = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    const line = redact(text)
    process.stderr.write(line.endsWith("\n") ? line : `${line}\n`)
  })

/**
 * Runs a command's program: logs to stderr in the chosen format; any failure or defect becomes one redacted line
 * `warren <command>: <what failed>` (or the full cause with `--verbose`) and `CliExit` with code 1.
 */
export const runCommand = <A, E, R>(
  name: string,
  common: Common,
  program: Effect.Effect<A, E, R>
): Effect.Effect<A, CliExit, R> =>
  program.pipe(
    Effect.catchAllCause((cause) => {
      if (Cause.isInterruptedOnly(cause)) return Effect.interrupt
      const failure = Cause.failureOption(cause)
      const line = Option.isSome(failure) && failure.value instanceof CliExit
        ? undefined
        : `warren ${name}: ${
          Option.match(failure, {
            onNone: () => `internal error: ${describeError(Cause.squash(cause))}`,
            onSome: describeError
          })
        }`
      const code = Option.isSome(failure) && failure.value instanceof CliExit ? failure.value.code : ExitCode.failure
      return Effect.zipRight(
        line === undefined
          ? Effect.void
          : printError(common.verbose ? `${line}\n${Cause.pretty(cause, { renderErrorCause: true })}` : line),
        Effect.fail(new CliExit({ code }))
      )
    }),
    Effect.provide(Logger.replace(
      Logger.defaultLogger,
      Logger.withConsoleError(common.logFormat === "json" ? Logger.jsonLogger : Logger.logfmtLogger)
    ))
  )

/** A usage error found after parsing (it names the flag): printed like @effect/cli's own, exit code 2. */
export const usageError = (message: string): Effect.Effect<never, CliExit> =>
  Effect.zipRight(printError(`warren: ${message}`), Effect.fail(new CliExit({ code: ExitCode.usage })))

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(redact(message)))

/** A duration flag: `500 millis`, `5 seconds`, `2 minutes`, or a number of milliseconds. */
export const duration = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName("DURATION"),
    Options.withDescription(`${description} (e.g. "5 seconds", "500 millis", or milliseconds).`),
    Options.mapEffect((text) => {
      const input = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text
      const decoded = Duration.decodeUnknown(input)
      return Option.isSome(decoded) && Duration.toMillis(decoded.value) > 0
        ? Effect.succeed(decoded.value)
        : Effect.fail(invalid(`--${name}: not a duration: "${text}" (e.g. "5 seconds", "500 millis", 250)`))
    })
  )

/** An integer flag within `min..max`; the error names the flag. */
export const integer = (name: string, description: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Options.text(name).pipe(
    Options.withPseudoName("N"),
    Options.withDescription(description),
    Options.mapEffect((text) => {
      const n = Number(text)
      return /^-?\d+$/.test(text.trim()) && n >= min && n <= max
        ? Effect.succeed(n)
        : Effect.fail(invalid(`--${name}: expected an integer from ${min} to ${max}, got "${text}"`))
    })
  )

/** A positive integer flag. */
export const positiveInt = (name: string, description: string) => integer(name, description, 1)

/** One of `values`; the error names the flag. */
export const choice = <const A extends string>(name: string, values: readonly [A, ...Array<A>], description: string) =>
  Options.text(name).pipe(
    Options.withPseudoName(values.join("|")),
    Options.withDescription(description),
    Options.mapEffect((text) =>
      (values as ReadonlyArray<string>).includes(text)
        ? Effect.succeed(text as A)
        : Effect.fail(invalid(`--${name}: expected one of ${values.join(", ")}, got "${text}"`))
    )
  )

/** Checks an AMQP URL (scheme, host, port) without ever printing its password. */
export const checkAmqpUrl =
  (flag: string) => (text: string): Effect.Effect<string, ValidationError.ValidationError> => {
    let url: URL
    try {
      url = new URL(text)
    } catch {
      return Effect.fail(invalid(`--${flag}: not a URL: ${redact(text)}`))
    }
    if (url.protocol !== "amqp:" && url.protocol !== "amqps:") {
      return Effect.fail(invalid(`--${flag}: must be an amqp:// or amqps:// URL, got ${url.protocol}//…`))
    }
    if (url.hostname === "") return Effect.fail(invalid(`--${flag}: the URL has no host`))
    return Effect.succeed(text)
  }

/** Checks `--store`: `embedded` or a `postgres://` URL, never printing a password. */
export const checkStore = (text: string): Effect.Effect<string, ValidationError.ValidationError> => {
  const value = text.trim()
  return value === "embedded" || /^postgres(ql)?:\/\/[^\s]+$/i.test(value)
    ? Effect.succeed(value)
    : Effect.fail(invalid(`--store: expected embedded or a postgres:// URL, got "${text}"`))
}

/** `--url`: the broker (or `WARREN_AMQP_URL`), checked and never printed with its password. */
export const amqpUrl = Options.text("url").pipe(
  Options.withPseudoName("AMQP_URL"),
  Options.withDescription(
    "The broker, amqp://user:password@host:port/vhost (or amqps://). Fallback: WARREN_AMQP_URL. The password is never printed."
  ),
  Options.withFallbackConfig(Config.string("WARREN_AMQP_URL")),
  Options.mapEffect(checkAmqpUrl("url"))
)
