// Diffusers Presets server: a browser that holds no workflow gets ComfyUI's default graph
// (CheckpointLoaderSimple, KSampler, ...), made of nodes this server does not have, and a
// "missing nodes" dialog. Load the pack's demo workflow in its place, before the frontend
// looks for missing nodes. Any other workflow is left alone.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

// The classic default graph (1.27 and older); newer frontends expose theirs on window.comfyAPI.
const CLASSIC_DEFAULT = "CLIPTextEncode,CLIPTextEncode,CheckpointLoaderSimple,EmptyLatentImage,KSampler,SaveImage,VAEDecode";
const DEMO = "/workflow_templates/diffusers-presets/demo_sdxl.json";

const signature = (graph) => (Array.isArray(graph?.nodes) ? graph.nodes.map((node) => node?.type).sort().join(",") : "");

function isUnrunnableDefaultGraph(graph) {
  const own = window.comfyAPI?.defaultGraph?.defaultGraph;
  const types = signature(graph);
  const registered = window.LiteGraph?.registered_node_types ?? {};
  return (types === CLASSIC_DEFAULT || (own && types === signature(own)))
    && graph.nodes.some((node) => !(node?.type in registered));
}

app.registerExtension({
  name: "DiffusersPresets.DemoForDefaultGraph",
  // 1.27 and 1.58 both await this with the graph about to load, before they collect missing
  // node types: replacing its contents in place swaps the workflow.
  async beforeConfigureGraph(graphData) {
    if (!isUnrunnableDefaultGraph(graphData)) return;
    try {
      const response = await api.fetchApi(DEMO);
      if (!response.ok) return;
      const demo = await response.json();
      for (const key of Object.keys(graphData)) delete graphData[key];
      Object.assign(graphData, demo);
    } catch (error) {
      console.warn("Diffusers Presets: the demo workflow could not be loaded", error);
    }
  },
});
