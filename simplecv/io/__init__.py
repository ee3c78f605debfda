"""One reader and writer for images and masks, shared by training, evaluation and inference.

- :mod:`simplecv.io.images`: check a file's header (:func:`read_header`), open an image for
  reading by rows (:func:`open_image`; PNG, JPEG, BMP, TIFF/GeoTIFF);
- :mod:`simplecv.io.masks`: open a colour mask (through an injected colour decoder) or a label
  mask for reading by rows (:func:`open_mask`);
- :mod:`simplecv.io.pairs`: find images and their masks in folders and check them before any
  model is built (:func:`list_pairs`, :class:`ImagePair`);
- :mod:`simplecv.io.writers`: palette PNG, label PNG and GeoTIFF label map writers.

Every problem raises :class:`simplecv.core.errors.DataError` with a one-line message that names
the file and the fix, the same message whichever of the three uses reads the file.
"""
