/**
 * Every program in `examples/` runs as a user would run it (`tsx`, with the packages' sources) and prints what its
 * comment says. A new example without an expectation here fails the first test.
 */
import { assert, describe, inject, it } from "@effect/vitest"
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { root } from "./support/warren.js"

declare module "vitest" {
  export interface ProvidedContext {
    broker: { readonly url: string }
  }
}

/** What each example must print on stdout. */
const expected: Record<string, RegExp> = {
  "rpc-effect.ts": /^HELLO\nFROM\nEFFECT\n$/,
  "pb-service.ts": /^code 201: nerraw \(#1\)\ncode 201: kair \(#2\)\ncode 2: \n$/,
  "supervision.ts":
    /^flaky worker up after 3 attempts\ncounter: 5\nroot children: counter \(restarts 0\), workers \(restarts 0\)\n$/
}

const examplesDir = NodePath.join(root, "examples")

const runExample = (file: string) =>
  Effect.async<{ readonly code: number | null; readonly stdout: string; readonly stderr: string }>((resume) => {
    const child = ChildProcess.spawn(
      process.execPath,
      ["node_modules/tsx/dist/cli.mjs", "--conditions=source", NodePath.join("examples", file)],
      { cwd: root, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, AMQP_URL: inject("broker").url } }
    )
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    child.once("exit", (code) => resume(Effect.succeed({ code, stdout, stderr })))
    return Effect.sync(() => child.kill("SIGKILL"))
  })

describe("examples/", () => {
  it("every example has an expectation here", () => {
    const files = NodeFs.readdirSync(examplesDir).filter((file) => file.endsWith(".ts")).sort()
    assert.deepStrictEqual(files, Object.keys(expected).sort())
  })

  for (const [file, output] of Object.entries(expected)) {
    it.live(`${file} runs and prints its result`, () =>
      Effect.gen(function*() {
        const result = yield* runExample(file)
        assert.strictEqual(result.code, 0, result.stderr)
        // Effect's default logger writes its lines (e.g. "AMQP connected") to stdout too: compare the rest.
        const printed = result.stdout.split("\n").filter((line) => !line.startsWith("timestamp=")).join("\n")
        assert.match(printed, output, result.stderr)
      }), 180_000)
  }
})
