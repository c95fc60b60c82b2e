"""Cost model, one module per component: params, states, activations, buffers, overhead."""
