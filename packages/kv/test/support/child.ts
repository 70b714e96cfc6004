/** Child processes for crash tests: TypeScript fixtures run with vite-node, killed with real signals. */
import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** The vite-node runner (a vitest dependency), found from this package upwards. */
export const viteNode = (): string => {
  for (let dir = path.dirname(fileURLToPath(import.meta.url));; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", "vite-node", "vite-node.mjs")
    if (fs.existsSync(candidate)) return candidate
    if (path.dirname(dir) === dir) throw new Error("vite-node not found")
  }
}

/** Starts `test/fixtures/<name>` with `args`; SIGKILLed when the scope closes (if still running). */
export const spawnFixture = (
  name: string,
  args: ReadonlyArray<string>
): Effect.Effect<ChildProcess, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [viteNode(), fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)), ...args], {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        stdio: ["ignore", "pipe", "pipe"]
      })
    ),
    (c) => Effect.sync(() => c.kill("SIGKILL"))
  )

/** The first stdout line of the child that matches `pattern` (fails with its stderr if it exits first). */
export const lineMatching = (child: ChildProcess, pattern: RegExp): Effect.Effect<string, Error> =>
  Effect.async<string, Error>((resume) => {
    let out = ""
    let err = ""
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString()
    })
    const onData = (d: Buffer) => {
      out += d.toString()
      const line = out.split("\n").slice(0, -1).find((l) => pattern.test(l))
      if (line !== undefined) {
        child.stdout!.off("data", onData)
        resume(Effect.succeed(line))
      }
    }
    child.stdout!.on("data", onData)
    child.once("exit", (code, signal) => resume(Effect.fail(new Error(`child exited (${code ?? signal}): ${err}`))))
  })

/** Waits until the child has exited; its exit code and signal. */
export const exited = (child: ChildProcess) =>
  Effect.async<{ code: number | null; signal: NodeJS.Signals | null }>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resume(Effect.succeed({ code: child.exitCode, signal: child.signalCode }))
    } else child.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
  })

/** All the child prints (stdout and stderr) until it exits. */
export const outputOf = (child: ChildProcess): Effect.Effect<string> =>
  Effect.async<string>((resume) => {
    let out = ""
    const add = (d: Buffer) => {
      out += d.toString()
    }
    child.stdout!.on("data", add)
    child.stderr!.on("data", add)
    child.once("close", () => resume(Effect.succeed(out)))
  })
