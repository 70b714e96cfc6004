/**
 * The `warren` executable: runs `Cli.run` with the process's arguments and exits with its code. SIGINT/SIGTERM
 * interrupt the command (servers stop cleanly and exit 0).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { run } from "./Cli.js"
import { ExitCode } from "./internal/common.js"

let code = 0
NodeRuntime.runMain(
  Effect.map(run(process.argv), (exitCode) => {
    code = exitCode
  }),
  {
    disableErrorReporting: true,
    // Commands install their own logger (stderr, --log-format).
    disablePrettyLogger: true,
    // Exit once stdout is drained (a pipe may still hold the reply).
    teardown: (exit, onExit) =>
      process.stdout.write("", () => onExit(Exit.isSuccess(exit) || Exit.isInterrupted(exit) ? code : ExitCode.failure))
  }
)
