/**
 * Runs the `warren` command as a process from the sources (vite-node with this project's vitest config, so
 * @warren/* resolve to their sources: no build needed).
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodeUrl from "node:url"

export const root = NodeUrl.fileURLToPath(new URL("../../../../", import.meta.url))

/** Spawns `warren ARGS`; the caller owns the child (see `spawnScoped`). */
export const spawnWarren = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  ChildProcess.spawn(
    process.execPath,
    [
      "node_modules/vite-node/vite-node.mjs",
      "--config",
      "packages/cli/vitest.config.ts",
      "packages/cli/src/main.ts",
      ...args
    ],
    { cwd: root, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } }
  )

/** A `warren ARGS` process for the life of the scope (killed when it closes). */
export const spawnScoped = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawnWarren(args, env)
      const output = { stdout: "", stderr: "" }
      child.stdout.on("data", (chunk) => (output.stdout += chunk))
      child.stderr.on("data", (chunk) => (output.stderr += chunk))
      return { child, output }
    }),
    ({ child }) => Effect.sync(() => child.exitCode === null && child.kill("SIGKILL"))
  )

/** Waits until the process's stdout matches `pattern`; fails if it exits first. */
export const waitForLine = (
  process: Effect.Effect.Success<ReturnType<typeof spawnScoped>>,
  pattern: RegExp
) =>
  Effect.async<RegExpExecArray, Error>((resume) => {
    const check = () => {
      const match = pattern.exec(process.output.stdout)
      if (match) resume(Effect.succeed(match))
    }
    process.child.stdout.on("data", () => setImmediate(check))
    process.child.once("exit", (code) =>
      resume(Effect.fail(new Error(`exited ${code}: ${process.output.stdout} ${process.output.stderr}`))))
    check()
  })

/** Runs `warren ARGS` to completion (stdin: `input`, or none), with its exit code and output. */
export const runWarren = (args: ReadonlyArray<string>, input?: Buffer | string) =>
  Effect.async<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = spawnWarren(args)
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.once("exit", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    child.stdin.on("error", () => {})
    child.stdin.end(input)
    return Effect.sync(() => child.kill("SIGKILL"))
  })
