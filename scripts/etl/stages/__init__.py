"""The pipeline's stages, one module (or package) each, as libraries without a command line.
A stage never imports another: what two stages share lives in a lower layer.
"""
