/** Runs a shell command with a request body on its stdin, for `warren rpc serve --exec`. */
import * as Effect from "effect/Effect"
import * as ChildProcess from "node:child_process"
import { CliFailure } from "./common.js"

/** How a command ended: its exit code (or the signal that killed it), stdout and stderr. */
export interface ExecResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: Buffer
  readonly stderr: Buffer
}

/**
 * Runs `command` with `sh -c`, `input` on its stdin; waits for it to exit. Interrupting the Effect kills the
 * command (SIGTERM). Fails only when the command cannot be started.
 */
export const exec = (command: string, input: Buffer): Effect.Effect<ExecResult, CliFailure> =>
  Effect.async<ExecResult, CliFailure>((resume) => {
    const child = ChildProcess.spawn("/bin/sh", ["-c", command], { stdio: ["pipe", "pipe", "pipe"] })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk))
    // A command that does not read its stdin closes the pipe early: that is its business, not an error.
    child.stdin.on("error", () => {})
    child.once(
      "error",
      (cause) => resume(Effect.fail(new CliFailure({ message: `cannot run --exec command: ${cause.message}`, cause })))
    )
    child.once(
      "close",
      (code, signal) =>
        resume(Effect.succeed({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) }))
    )
    child.stdin.end(input)
    return Effect.sync(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM")
    })
  })
