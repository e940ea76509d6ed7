// Which Gemini models can stop thinking, and how (Google's "thinking" docs). The one table to
// extend when a model arrives: the first entry whose pattern matches the model name wins.

/** What NoThink sends for a model; `undefined` fields mean "leave that API alone". */
export interface NoThinkRule {
  /** Native API: `generationConfig.thinkingConfig.thinkingBudget` (2.5 models). */
  readonly thinkingBudget?: number;
  /** Native API: `generationConfig.thinkingConfig.thinkingLevel` (Gemini 3 models; never with a budget). */
  readonly thinkingLevel?: 'minimal' | 'low';
  /** OpenAI-compatible endpoint: `reasoning_effort`. */
  readonly reasoningEffort?: 'none';
}

export const MODEL_RULES: readonly { readonly pattern: RegExp; readonly rule: NoThinkRule | undefined; readonly why: string }[] = [
  // Image and speech variants have no thinking to turn off, and may refuse a thinkingConfig.
  { pattern: /^gemini-2\.5-flash(-lite)?-(image|.*tts|native-audio)/, rule: undefined, why: 'no thinking config' },
  { pattern: /^gemini-2\.5-flash(-lite)?(-|$)/, rule: { thinkingBudget: 0, reasoningEffort: 'none' }, why: 'a budget of 0 turns thinking off' },
  { pattern: /^gemini-2\.5-pro(-|$)/, rule: undefined, why: 'cannot disable thinking: a budget of 0 is a 400' },
  // Gemini 3: levels replace budgets. Flash and Flash-Lite accept `minimal`; Pro's lowest is `low`.
  { pattern: /^gemini-3(\.\d+)?-flash(-|$)/, rule: { thinkingLevel: 'minimal' }, why: 'minimal is the lowest level' },
  { pattern: /^gemini-3(\.\d+)?-pro(-|$)/, rule: { thinkingLevel: 'low' }, why: 'low is the lowest level Pro accepts' },
  { pattern: /^gemini-3(\.\d+)?-/, rule: { thinkingLevel: 'low' }, why: 'low is accepted by every Gemini 3 model' },
];

/** The rule for a model name (`models/` prefix and `publishers/google/` paths allowed), or undefined. */
export function ruleFor(model: string): NoThinkRule | undefined {
  const name = model.slice(model.lastIndexOf('/') + 1).toLowerCase();
  return MODEL_RULES.find((entry) => entry.pattern.test(name))?.rule;
}
