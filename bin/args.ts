// What the commands share about their arguments.

/** node:util parseArgs' messages, made short: `unknown option "--bogus"`. */
export function argumentProblem(err: unknown): string {
  const e = err as { code?: string; message: string };
  const option = /'(-[^']*)'/.exec(e.message)?.[1];
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && option) return `unknown option "${option}"`;
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && option) return `option "${option}" needs a value`;
  return e.message;
}
