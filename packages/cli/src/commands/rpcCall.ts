/** `warren rpc call`: one RPC request, the response body on stdout. (Filled in by the AMQP work.) */
export const runRpcCall = (_args: ReadonlyArray<string>): void => {
  process.stderr.write("warren rpc call: not implemented yet\n")
  process.exitCode = 1
}
