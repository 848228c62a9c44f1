"""The defocus classifier (paper 3.5 and 4.1): the deep feature CNN f_C (:mod:`dhde.model.cnn`,
and :mod:`.cnn_shared`, which shares its first layer between overlapping patches), the
fc 300-150-11 network and its ``ModelConfig`` / ``DefocusModel`` (:mod:`.network`), saving and
loading trained models and the shipped one (:mod:`.io`), and the authors' released Caffe model:
its file format (:mod:`.caffe_format`) and import (:mod:`.caffe`). Layer 4: imports only
dhde.features and lower."""
