// Types of burnish's JavaScript API (burnish.js) and of the <burnish-trainer> element.

/** What went wrong: `message` names the file, line or field. */
export class BurnishError extends Error {
  readonly name: 'BurnishError';
  readonly code: 'bad_input' | 'busy' | 'no_webgpu' | 'crashed' | 'closed' | 'unsupported' | 'network';
}

/** A data source: a demo name, a same-origin table URL, a File/Blob, or rows with labels. */
export type Data =
  | 'digits'
  | 'movie-sentiment'
  | string
  | Blob
  | { rows: number[][]; labels: (string | number)[]; columns?: string[]; name?: string; image?: ImageRows };

export interface ImageRows { shape: [number, number, number]; max_value: number }

export interface LoadOptions {
  role?: 'train' | 'validation' | 'test';
  /** The label column (default: the last text column, else the last). */
  label?: string;
  hasHeader?: boolean;
  /** Table rows are images of this shape. */
  image?: ImageRows;
  /** Text models: the file is CoNLL (`token<TAB>tag`); guessed from the name otherwise. */
  conll?: boolean;
  columns?: { text: string; pair?: string | null; label: string };
}

/** Any part of the recipe JSON (see the README); the rest takes its defaults. */
export type Recipe = Record<string, unknown>;

export interface Preview { role: string; source: string; rows: number; classes: string[]; [key: string]: unknown }

export interface Progress { type: 'progress'; step: number; steps: number; loss: number; learning_rate: number; ms_per_step: number; host_ms: number }
export interface Started { type: 'started'; rows: number; steps: number; epochs: number; steps_per_epoch: number; parameters: number; total_parameters: number; device: string;
  /** The GPU adapter the worker trains on, as WebGPU describes it (absent on a CPU backend). */
  adapter?: string }
export interface EpochEvent {
  type: 'epoch'; epoch: number; epochs: number; train_loss: number; validation_loss: number;
  validation_accuracy: number; validation_macro_f1: number; validation_entity_f1: number | null; improved: boolean;
}

export interface ClassMetrics { name: string; precision: number; recall: number; f1: number; support: number }
export interface Report {
  split: string; loss: number; text: string; best_epoch: number; epochs_run: number;
  stopped_early: boolean; cancelled: boolean; peak_memory?: number;
  report: { classes: ClassMetrics[]; accuracy: number; macro_avg: [number, number, number]; weighted_avg: [number, number, number]; confusion: number[][]; total: number };
}

export interface ModelInfo { origin: string; classes: string[]; parameters: number; [key: string]: unknown }
export interface Prediction { classes: string[]; probabilities: number[]; best: number }
export interface TextPrediction { task: 'sequence' | 'tokens'; classes: Prediction | null; words: { word: string; start: number; end: number; tag: string; probability: number }[]; entities: unknown[] }

export interface EventMap {
  started: Started; progress: Progress; epoch: EpochEvent; paused: { step: number }; resumed: { step: number };
  report: Report; model: ModelInfo; loaded: { preview: Preview }; error: BurnishError; crashed: BurnishError;
}

export interface Trainer {
  readonly session: number;
  /** `features` (tables, images) or `text` (a pretrained encoder is loaded). */
  readonly kind: 'features' | 'text';
  readonly last: { started: Started | null; progress: Progress | null; epochs: EpochEvent[]; report: Report | null; model: ModelInfo | null };
  on<K extends keyof EventMap>(type: K, handler: (detail: EventMap[K]) => void): () => void;
  load(data: Data, options?: LoadOptions): Promise<Preview>;
  loadModel(model: 'minilm' | { files: { path: string; bytes: Uint8Array | Blob }[] }): Promise<unknown>;
  train(options?: { recipe?: Recipe; continueTraining?: boolean }): Promise<{ report: Report; model: ModelInfo }>;
  pause(): Promise<void>;
  resume(): Promise<void>;
  cancel(): Promise<void>;
  evaluate(data?: Data, options?: LoadOptions): Promise<Report>;
  predict(input: number[] | Blob | Uint8Array): Promise<Prediction>;
  predict(text: string, pair?: string | null): Promise<TextPrediction>;
  /** Safetensors bytes; for a text model the folder's files. */
  export(options?: { adapter?: boolean }): Promise<Uint8Array | { name: string; bytes: Uint8Array }[]>;
  import(model: Uint8Array | Blob | string): Promise<ModelInfo>;
  close(): void;
}

export function createTrainer(options?: {
  model?: 'minilm' | { files: { path: string; bytes: Uint8Array | Blob }[] };
  data?: Data; dataOptions?: LoadOptions; validation?: Data; test?: Data;
}): Promise<Trainer>;

export function supported(): Promise<boolean>;
export function defaultRecipe(): Promise<Recipe>;

/** <burnish-trainer data="digits" epochs="5" learning-rate="0.01" panels="chart,report,predict"> */
export class BurnishTrainerElement extends HTMLElement {
  readonly trainer: Trainer | null;
  readonly state: { phase: string; losses: [number, number, number][]; epochs: EpochEvent[]; report: Report | null; model: ModelInfo | null; preview: Preview | null; errors: string[] };
  recipe(): Recipe;
  train(): Promise<Report | null>;
}

declare global {
  interface HTMLElementTagNameMap { 'burnish-trainer': BurnishTrainerElement }
}
