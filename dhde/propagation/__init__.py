"""Sparse-to-full propagation of the defocus map (paper 4.3, Eq. 7-8): the matting Laplacian of
the guidance image as a float32 stencil (:mod:`dhde.propagation.matting`), the geometric
multigrid preconditioner (:mod:`.multigrid`) and the conjugate-gradient solve of
``(L + gamma D) x = gamma D b`` (:mod:`.solver`). Layer 5: imports only dhde.model and lower."""
