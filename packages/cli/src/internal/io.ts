/** The standard streams of a command, so tests can run commands in-process. */
import * as Effect from "effect/Effect"

/** Where a command reads its input and writes its output. */
export interface Io {
  readonly stdin: Effect.Effect<Buffer>
  readonly stdout: (bytes: Buffer) => Effect.Effect<void>
  /** Progress and diagnostics (not redacted: callers print no secrets here). */
  readonly stderr: (text: string) => void
  /** stderr is a terminal (progress bars are drawn only then). */
  readonly isTTY: boolean
}

/** The process's streams. stdout writes wait until the bytes are handed to the OS (a pipe may be slow). */
export const nodeIo: Io = {
  stdin: Effect.async<Buffer>((resume) => {
    const chunks: Array<Buffer> = []
    process.stdin.on("data", (chunk: Buffer) => chunks.push(chunk))
    process.stdin.once("end", () => resume(Effect.succeed(Buffer.concat(chunks))))
    process.stdin.resume()
  }),
  stdout: (bytes) => Effect.async<void>((resume) => void process.stdout.write(bytes, () => resume(Effect.void))),
  stderr: (text) => void process.stderr.write(text),
  isTTY: process.stderr.isTTY === true
}
