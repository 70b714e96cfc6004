/** Placeholder until the package lands. */
export const placeholder = true
