"""Multi-layer refinement and texturing (stage 5 of the paper): body, then clothes, then hair,
guided by multi-view normal maps and masks; continuous remeshing, collision loss, dilation, the
ExplicitTarget pass, and UV textures baked from the views."""
