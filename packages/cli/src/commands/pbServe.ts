/** `warren pb serve`: runs the PB server until SIGINT/SIGTERM. (Filled in by the PB work.) */
export const runPbServe = (_args: ReadonlyArray<string>): void => {
  process.stderr.write("warren pb serve: not implemented yet\n")
  process.exitCode = 1
}
