// The rules live in tools/dev (where typescript-eslint finds the TypeScript 5 it needs): see tools/dev/index.mjs.
export { default } from "@warren/dev-tools"
