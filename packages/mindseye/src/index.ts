// mindseye — latent-prediction pretraining of vision-language models, over @mindseye/torch.
export { VERSION } from "./version.js";
export { doctorReport } from "./util/environment.js";
