"""Reusable network building blocks.

=================  ==========================================================
``mean_field``     MDMA mean-field attention block and body
``epic``           EPiC layer (particles + global vector)
``transformer``    masked transformer encoder block, class token
``embeddings``     cosine and random-Fourier time embeddings
``gan``            LSGAN / WGAN-GP losses, gradient penalty, mean-field matching,
                   weight normalisation
``cfm``            conditional flow matching (torchcfm) and ODE solvers (torchdiffeq)
``flows``          RQS coupling flows (zuko)
``vae``            conditional beta-VAE with a Bernoulli decoder (CaloINN's VAE+INN)
=================  ==========================================================
"""
