// The answer a fetch gives the engine: `[value, flags, fresh, tags, stale,
// expired]` (read by platform-wasm/src/js_api/fetch.rs): the value, what the
// fetcher said of it (the flags below), the windows it chose with
// `ctx.setTtl` (negative: none) and the tags it chose with `ctx.setTags`
// (`undefined`: none). A context's setter writes its slot or flag; a setter
// added later takes the next slot.

/** `ctx.noStore()` was called. */
export const NO_STORE = 1;
/** The fetcher returned `ctx.notModified()`. */
export const NOT_MODIFIED = 2;
/** The fetcher misused its context: `answer[0]` is the message. */
export const INVALID = 4;

/** An answer with no value, no flags, and no windows or tags chosen. */
export const blank = () => [undefined, 0, -1, undefined, -1, -1];
