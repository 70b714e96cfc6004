/** Erlang-style processes (gen_server behaviours) on Effect. */
export * as Process from "./Process.js"
